"""Readers, key layouts and load reports for the four official encoder files MFuser uses.

The files (see ``MFUSER_REFERENCE.md`` and the key manifests):

======================================  =======================  ============================================
file                                    format                   naming
======================================  =======================  ============================================
``dinov2_vitl14_pretrain.pth``          flat torch state dict    facebookresearch/dinov2 ``DinoVisionTransformer``
``ViT-L-14-336px.pt``                   TorchScript archive      OpenAI CLIP (vision under ``visual.``, text top-level)
``EVA02_CLIP_L_336_psz14_s6B.pt``       flat torch state dict    EVA-CLIP ``CustomCLIP`` (``visual.``, ``text.``)
``siglip_vitl16_384.pth``               flat torch state dict    HF transformers ``SiglipModel``
======================================  =======================  ============================================

This module only *reads* files safely (``torch.load(weights_only=True)``; TorchScript archives through
``torch.jit.load``, which never unpickles arbitrary Python objects), describes the official key layouts
(``*_layout`` functions: ordered ``{name: (shape, dtype)}``) and reports what a load matched. The per-family
key conversion onto the timm / open_clip module names lives next to each encoder.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence, Tuple

import torch

__all__ = [
    "OfficialCheckpointLoader",
    "CheckpointError",
    "CheckpointMismatchError",
    "LoadReport",
    "read_state_dict",
    "describe_state_dict",
    "check_source_keys",
    "dinov2_layout",
    "clip_layout",
    "eva02_layout",
    "siglip_layout",
]



class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (missing, truncated, not a state dict)."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose keys or shapes do not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_ema")


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder and ``constants.pkl``; ``torch.save`` zips are not."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.startswith("code/") for n in names) and any(
        n.endswith("constants.pkl") for n in names
    )


def _unwrap(obj, path: str) -> Dict[str, torch.Tensor]:
    # Containers such as {'module': sd}, {'state_dict': sd} or {'model': sd} (EVA-CLIP / DeepSpeed style).
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: state dict has a non-string key {k!r}")
        if not isinstance(v, torch.Tensor):
            continue  # e.g. an 'epoch' entry next to the weights; weights are what we need
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if not sd:
        raise CheckpointError(f"{path}: contains no tensors")
    return sd


def read_state_dict(path: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """Read an official checkpoint file into a flat ``{name: tensor}`` dict on CPU.

    Args:
        path: a ``.pth`` / ``.pt`` written by ``torch.save`` (optionally wrapped in ``{'state_dict'|'model'|
            'module': ...}``, a leading ``module.`` is stripped) or a TorchScript archive (OpenAI CLIP).

    Returns:
        (state_dict, format) where format is ``"torchscript"`` or ``"torch.save"``. Tensors keep the file's dtype.

    Raises:
        CheckpointError: naming the file, when it does not exist, is truncated or is not a state dict.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a directory, expected a file: {path}")
    if _is_torchscript_archive(path):
        try:
            with warnings.catch_warnings():  # torch.jit.* FutureWarnings: the OpenAI file *is* TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                scripted = torch.jit.load(path, map_location="cpu")
            sd = {k: v.detach() for k, v in scripted.state_dict().items()}
        except Exception as e:  # torch raises many types here; re-raise as one clear error
            raise CheckpointError(f"{path}: cannot read TorchScript archive ({type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
        return _unwrap(sd, path), "torchscript"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: cannot read as a torch checkpoint (truncated, corrupt, or not a weights-only state dict): "
            f"{type(e).__name__}: {msg[:300]}") from None
    return _unwrap(obj, path), "torch.save"


# Signature keys used to name the model a state dict belongs to (for error messages).
_SIGNATURES = (
    ("an OpenAI CLIP archive (ViT + text tower)",
     ("visual.class_embedding", "visual.conv1.weight", "token_embedding.weight")),
    ("an EVA02-CLIP checkpoint", ("visual.blocks.0.attn.q_proj.weight", "visual.blocks.0.mlp.w1.weight")),
    ("a HF SigLIP checkpoint", ("vision_model.embeddings.patch_embedding.weight", "text_model.head.weight")),
    ("a DINOv2 ViT checkpoint", ("mask_token", "blocks.0.ls1.gamma")),
    ("an open_clip checkpoint", ("visual.trunk.pos_embed",)),
    ("a timm ViT checkpoint", ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")),
)


def describe_state_dict(sd: Dict[str, torch.Tensor]) -> str:
    """A short guess of which model a state dict comes from, e.g. 'looks like an OpenAI CLIP archive'."""
    for name, keys in _SIGNATURES:
        if all(k in sd for k in keys):
            return f"looks like {name}"
    sample = ", ".join(list(sd)[:3])
    return f"unrecognised layout ({len(sd)} keys, first: {sample})"


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What a ``load_official`` call did, by *file* key name.

    Attributes:
        file: path that was read.
        model: human name of the expected layout, e.g. ``"DINOv2 ViT-L/14"``.
        matched: file keys that were loaded into the module (possibly after renaming / adapting).
        missing: expected file keys that the file lacks (an error unless allowed).
        unexpected: file keys that belong to no part of the expected layout (an error unless allowed).
        adapted: ``"key: (old shape) -> (new shape)"`` for tensors resized / truncated at load.
        ignored: file keys of the expected layout deliberately not loaded (the other tower of a two-tower file,
            buffers recomputed by the model such as RoPE tables, pretraining-only tensors such as ``mask_token``).
    """

    file: str
    model: str
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    adapted: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def counts(self) -> Dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("matched", "missing", "unexpected", "adapted", "ignored")}

    def summary(self, max_names: int = 10) -> str:
        lines = [f"{self.model} <- {self.file}: " + ", ".join(f"{k} {v}" for k, v in self.counts().items())]
        for k in ("missing", "unexpected", "adapted"):
            names = getattr(self, k)
            if names:
                more = f" ... (+{len(names) - max_names})" if len(names) > max_names else ""
                lines.append(f"  {k}: " + ", ".join(names[:max_names]) + more)
        return "\n".join(lines)


def check_source_keys(
    sd: Dict[str, torch.Tensor],
    *,
    path: str,
    model: str,
    used: Iterable[str],
    ignored: Iterable[str] = (),
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Compare a file's keys with the expected official layout, before any conversion.

    Args:
        sd: the file's state dict.
        used: the official file keys the model loads.
        ignored: official file keys that are expected in the file but deliberately not loaded.
        allow_missing / allow_unexpected: when False (the default), raise on missing / unexpected keys.

    Raises:
        CheckpointMismatchError: naming the file, the expected layout, the counts and the first offending keys.
    """
    used = list(used)
    ignored_set = set(ignored)
    used_set = set(used)
    matched = [k for k in used if k in sd]
    missing = [k for k in used if k not in sd]
    unexpected = [k for k in sd if k not in used_set and k not in ignored_set]
    report = LoadReport(file=path, model=model, matched=matched, missing=missing, unexpected=unexpected,
                        ignored=[k for k in sd if k in ignored_set])
    if (missing and not allow_missing) or (unexpected and not allow_unexpected):
        if not matched:
            head = f"{path}: expected {model} keys; found 0 of {len(used)}, {describe_state_dict(sd)}"
        else:
            head = (f"{path}: does not match {model}: found {len(matched)} of {len(used)} expected keys, "
                    f"{len(missing)} missing, {len(unexpected)} unexpected ({describe_state_dict(sd)})")
        details = []
        if missing:
            details.append("missing: " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            details.append("unexpected: " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
        err = CheckpointMismatchError(head + "\n  " + "\n  ".join(details))
        err.report = report
        raise err
    return report


def load_converted(
    module: torch.nn.Module,
    converted: Dict[str, torch.Tensor],
    *,
    path: str,
    model: str,
    target_ignore: Sequence[str] = (),
) -> None:
    """Copy an already converted state dict into ``module`` (cast to the module's dtypes) with shape checks.

    Every module parameter/buffer (except names in ``target_ignore`` and non-persistent buffers) must be present in
    ``converted`` with the same shape; anything else is a :class:`CheckpointMismatchError` naming the keys.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in converted and k not in target_ignore]
    unexpected = [k for k in converted if k not in own]
    bad_shape = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in converted.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            parts.append("shape mismatch (a model of another size?): " + "; ".join(bad_shape[:6]))
        if missing:
            parts.append("model tensors not provided: " + ", ".join(missing[:8]))
        if unexpected:
            parts.append("converted tensors the model lacks: " + ", ".join(unexpected[:8]))
        raise CheckpointMismatchError(f"{path}: cannot load into {model}: " + "; ".join(parts))
    with torch.no_grad():
        for k, v in converted.items():
            own[k].copy_(v.to(dtype=own[k].dtype))


class OfficialCheckpointLoader:
    """Mixin: ``load_official(path)`` / ``load_official_state_dict(sd)`` for the image and the text encoders.

    The subclass provides ``model_name``, ``_official_keys() -> (used, ignored)`` (names in the file),
    ``_convert(sd) -> (converted, adapted)`` (file names -> target names, shape adaptations) and
    ``_checkpoint_target()`` (the module the converted tensors load into). Converted keys starting with "@" are
    not loaded into the target; they are handed to ``_load_extra(extra)`` (e.g. SigLIP's logit scale / bias).
    """

    def load_official(self, path: str, strict: bool = True) -> LoadReport:
        """Load the official checkpoint file at ``path`` (formats: :func:`read_state_dict`).

        Args:
            strict: when True, a missing or unexpected key raises :class:`CheckpointMismatchError`; when False
                they are only listed in the report (present keys are still loaded, absent ones keep their values).
        Returns:
            :class:`LoadReport` in the file's key names.
        """
        path = str(path)
        sd, _ = read_state_dict(path)
        return self.load_official_state_dict(sd, source=path, strict=strict)

    def convert_official_state_dict(
        self, sd: Dict[str, torch.Tensor], source: str = "<state dict>", strict: bool = True,
        optional: Sequence[str] = (),
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], LoadReport]:
        """Check and convert an official file's state dict without loading it.

        Args:
            sd: the file's tensors, in the file's names.
            source: named in errors and the report.
            strict: missing / unexpected file keys raise :class:`CheckpointMismatchError`.
            optional: file keys that may be missing even when ``strict`` (e.g. SigLIP's ``logit_*``, which an
                official MFuser checkpoint does not hold).

        Returns:
            (converted, extra, report): ``converted`` in the names of ``self._checkpoint_target()``'s state dict
            (float32), ``extra`` the encoder-level tensors for ``_load_extra``, and the :class:`LoadReport`.
        """
        used, ignored = self._official_keys()
        optional = set(optional)
        required = [k for k in used if k not in optional or k in sd]
        report = check_source_keys(sd, path=source, model=self.model_name, used=required,
                                   ignored=[*ignored, *(k for k in used if k not in required)],
                                   allow_missing=not strict, allow_unexpected=not strict)
        matched = set(report.matched)
        sd32 = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items() if k in matched}
        converted, adapted = self._convert(sd32)
        extra = {k[1:]: converted.pop(k) for k in list(converted) if k.startswith("@")}
        report.adapted = adapted
        return converted, extra, report

    def load_official_state_dict(self, sd: Dict[str, torch.Tensor], source: str = "<state dict>",
                                 strict: bool = True) -> LoadReport:
        """As :meth:`load_official` for a state dict already read with :func:`read_state_dict`."""
        converted, extra, report = self.convert_official_state_dict(sd, source=source, strict=strict)
        target = self._checkpoint_target()
        own = target.state_dict()
        if not strict:
            converted = {k: v for k, v in converted.items() if k in own}
            for k, v in own.items():
                converted.setdefault(k, v)
        load_converted(target, converted, path=source, model=self.model_name)
        self._load_extra(extra)
        self.load_report = report
        return report

    def _load_extra(self, extra: Dict[str, torch.Tensor]) -> None:
        if extra:
            raise CheckpointMismatchError(f"{self.model_name}: unexpected encoder-level tensors {sorted(extra)}")


# ---------------------------------------------------------------------------------------------------------------
# Official layouts: ordered {name: (shape, dtype)} exactly as in the key manifests (full-size defaults); the
# keyword arguments scale them down for tiny test files (same names, fewer blocks, smaller widths).
# ---------------------------------------------------------------------------------------------------------------
F32, F16, I64 = torch.float32, torch.float16, torch.int64


def dinov2_layout(embed_dim: int = 1024, depth: int = 24, patch_size: int = 14, img_size: int = 518,
                  mlp_ratio: float = 4.0) -> OrderedDict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """``dinov2_vitl14_pretrain.pth``: 343 keys at full size, all float32."""
    C, H, g = embed_dim, int(embed_dim * mlp_ratio), img_size // patch_size
    lay = OrderedDict()
    lay["cls_token"] = ((1, 1, C), F32)
    lay["pos_embed"] = ((1, 1 + g * g, C), F32)
    lay["mask_token"] = ((1, C), F32)
    lay["patch_embed.proj.weight"] = ((C, 3, patch_size, patch_size), F32)
    lay["patch_embed.proj.bias"] = ((C,), F32)
    for i in range(depth):
        p = f"blocks.{i}."
        for name, shape in (("norm1.weight", (C,)), ("norm1.bias", (C,)), ("attn.qkv.weight", (3 * C, C)),
                            ("attn.qkv.bias", (3 * C,)), ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
                            ("ls1.gamma", (C,)), ("norm2.weight", (C,)), ("norm2.bias", (C,)),
                            ("mlp.fc1.weight", (H, C)), ("mlp.fc1.bias", (H,)), ("mlp.fc2.weight", (C, H)),
                            ("mlp.fc2.bias", (C,)), ("ls2.gamma", (C,))):
            lay[p + name] = (shape, F32)
    lay["norm.weight"] = ((C,), F32)
    lay["norm.bias"] = ((C,), F32)
    return lay


def _openai_resblocks(prefix: str, width: int, layers: int, fp16: Sequence[str], dtype_all=None):
    out = OrderedDict()
    W = width
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        for name, shape in (("attn.in_proj_weight", (3 * W, W)), ("attn.in_proj_bias", (3 * W,)),
                            ("attn.out_proj.weight", (W, W)), ("attn.out_proj.bias", (W,)),
                            ("ln_1.weight", (W,)), ("ln_1.bias", (W,)), ("mlp.c_fc.weight", (4 * W, W)),
                            ("mlp.c_fc.bias", (4 * W,)), ("mlp.c_proj.weight", (W, 4 * W)), ("mlp.c_proj.bias", (W,)),
                            ("ln_2.weight", (W,)), ("ln_2.bias", (W,))):
            dt = dtype_all or (F16 if any(name.startswith(f) for f in fp16) else F32)
            out[p + name] = (shape, dt)
    return out


def clip_layout(embed_dim: int = 768, image_resolution: int = 336, vision_layers: int = 24, vision_width: int = 1024,
                vision_patch_size: int = 14, context_length: int = 77, vocab_size: int = 49408,
                transformer_width: int = 768, transformer_layers: int = 12):
    """``ViT-L-14-336px.pt`` (OpenAI TorchScript): 449 entries at full size, mixed fp16/fp32 as convert_weights().

    The text tower sits at top level; the vision tower under ``visual.``; plus 0-dim int64 extras
    ``input_resolution``, ``context_length``, ``vocab_size`` and the fp32 ``logit_scale``.
    """
    fp16 = ("attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj")
    g = image_resolution // vision_patch_size
    Wv, Wt = vision_width, transformer_width
    lay = OrderedDict()
    lay["positional_embedding"] = ((context_length, Wt), F32)
    lay["text_projection"] = ((Wt, embed_dim), F16)
    lay["logit_scale"] = ((), F32)
    lay["input_resolution"] = ((), I64)
    lay["context_length"] = ((), I64)
    lay["vocab_size"] = ((), I64)
    lay["visual.class_embedding"] = ((Wv,), F32)
    lay["visual.positional_embedding"] = ((g * g + 1, Wv), F32)
    lay["visual.proj"] = ((Wv, embed_dim), F16)
    lay["visual.conv1.weight"] = ((Wv, 3, vision_patch_size, vision_patch_size), F16)
    lay["visual.ln_pre.weight"] = ((Wv,), F32)
    lay["visual.ln_pre.bias"] = ((Wv,), F32)
    lay.update(_openai_resblocks("visual.", Wv, vision_layers, fp16))
    lay["visual.ln_post.weight"] = ((Wv,), F32)
    lay["visual.ln_post.bias"] = ((Wv,), F32)
    lay.update(_openai_resblocks("", Wt, transformer_layers, fp16))
    lay["token_embedding.weight"] = ((vocab_size, Wt), F32)
    lay["ln_final.weight"] = ((Wt,), F32)
    lay["ln_final.bias"] = ((Wt,), F32)
    return lay


CLIP_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def eva02_layout(embed_dim: int = 768, vision_width: int = 1024, vision_layers: int = 24, vision_heads: int = 16,
                 vision_mlp_hidden: int = 2730, patch_size: int = 14, img_size: int = 336, context_length: int = 77,
                 vocab_size: int = 49408, text_width: int = 768, text_layers: int = 12):
    """``EVA02_CLIP_L_336_psz14_s6B.pt`` (EVA-CLIP ``CustomCLIP``): 712 keys at full size, all float16.

    Includes the 2 + 2 * depth RoPE table aliases ``*rope.freqs_{cos,sin}`` (grid^2, head_dim).
    """
    C, Hm, g, hd = vision_width, vision_mlp_hidden, img_size // patch_size, vision_width // vision_heads
    lay = OrderedDict()
    lay["logit_scale"] = ((), F16)
    lay["visual.cls_token"] = ((1, 1, C), F16)
    lay["visual.pos_embed"] = ((1, 1 + g * g, C), F16)
    lay["visual.patch_embed.proj.weight"] = ((C, 3, patch_size, patch_size), F16)
    lay["visual.patch_embed.proj.bias"] = ((C,), F16)
    lay["visual.rope.freqs_cos"] = ((g * g, hd), F16)
    lay["visual.rope.freqs_sin"] = ((g * g, hd), F16)
    for i in range(vision_layers):
        p = f"visual.blocks.{i}."
        for name, shape in (("norm1.weight", (C,)), ("norm1.bias", (C,)), ("attn.q_bias", (C,)),
                            ("attn.v_bias", (C,)), ("attn.q_proj.weight", (C, C)), ("attn.k_proj.weight", (C, C)),
                            ("attn.v_proj.weight", (C, C)), ("attn.inner_attn_ln.weight", (C,)),
                            ("attn.inner_attn_ln.bias", (C,)), ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
                            ("attn.rope.freqs_cos", (g * g, hd)), ("attn.rope.freqs_sin", (g * g, hd)),
                            ("norm2.weight", (C,)), ("norm2.bias", (C,)), ("mlp.w1.weight", (Hm, C)),
                            ("mlp.w1.bias", (Hm,)), ("mlp.w2.weight", (Hm, C)), ("mlp.w2.bias", (Hm,)),
                            ("mlp.ffn_ln.weight", (Hm,)), ("mlp.ffn_ln.bias", (Hm,)), ("mlp.w3.weight", (C, Hm)),
                            ("mlp.w3.bias", (C,))):
            lay[p + name] = (shape, F16)
    lay["visual.norm.weight"] = ((C,), F16)
    lay["visual.norm.bias"] = ((C,), F16)
    lay["visual.head.weight"] = ((embed_dim, C), F16)
    lay["visual.head.bias"] = ((embed_dim,), F16)
    Wt = text_width
    lay["text.positional_embedding"] = ((context_length, Wt), F16)
    lay["text.text_projection"] = ((Wt, embed_dim), F16)
    lay["text.token_embedding.weight"] = ((vocab_size, Wt), F16)
    for i in range(text_layers):
        p = f"text.transformer.resblocks.{i}."
        for name, shape in (("ln_1.weight", (Wt,)), ("ln_1.bias", (Wt,)), ("attn.in_proj_weight", (3 * Wt, Wt)),
                            ("attn.in_proj_bias", (3 * Wt,)), ("attn.out_proj.weight", (Wt, Wt)),
                            ("attn.out_proj.bias", (Wt,)), ("ln_2.weight", (Wt,)), ("ln_2.bias", (Wt,)),
                            ("mlp.c_fc.weight", (4 * Wt, Wt)), ("mlp.c_fc.bias", (4 * Wt,)),
                            ("mlp.c_proj.weight", (Wt, 4 * Wt)), ("mlp.c_proj.bias", (Wt,))):
            lay[p + name] = (shape, F16)
    lay["text.ln_final.weight"] = ((Wt,), F16)
    lay["text.ln_final.bias"] = ((Wt,), F16)
    return lay


def _hf_layers(prefix: str, width: int, mlp: int, layers: int):
    out = OrderedDict()
    W = width
    for i in range(layers):
        p = f"{prefix}encoder.layers.{i}."
        for name, shape in (("layer_norm1.weight", (W,)), ("layer_norm1.bias", (W,)),
                            ("self_attn.k_proj.weight", (W, W)), ("self_attn.k_proj.bias", (W,)),
                            ("self_attn.v_proj.weight", (W, W)), ("self_attn.v_proj.bias", (W,)),
                            ("self_attn.q_proj.weight", (W, W)), ("self_attn.q_proj.bias", (W,)),
                            ("self_attn.out_proj.weight", (W, W)), ("self_attn.out_proj.bias", (W,)),
                            ("layer_norm2.weight", (W,)), ("layer_norm2.bias", (W,)), ("mlp.fc1.weight", (mlp, W)),
                            ("mlp.fc1.bias", (mlp,)), ("mlp.fc2.weight", (W, mlp)), ("mlp.fc2.bias", (W,))):
            out[p + name] = (shape, F32)
    return out


def siglip_layout(vision_width: int = 1024, vision_layers: int = 24, vision_mlp: int = 4096, patch_size: int = 16,
                  img_size: int = 384, text_width: int = 1024, text_layers: int = 24, text_mlp: int = 4096,
                  vocab_size: int = 32000, max_positions: int = 64, embed_dim: int = 1024):
    """``siglip_vitl16_384.pth`` (HF ``SiglipModel`` names): 792 keys at full size, float32."""
    Wt, Wv, g = text_width, vision_width, img_size // patch_size
    lay = OrderedDict()
    lay["logit_scale"] = ((1,), F32)
    lay["logit_bias"] = ((1,), F32)
    lay["text_model.embeddings.token_embedding.weight"] = ((vocab_size, Wt), F32)
    lay["text_model.embeddings.position_embedding.weight"] = ((max_positions, Wt), F32)
    lay.update(_hf_layers("text_model.", Wt, text_mlp, text_layers))
    lay["text_model.final_layer_norm.weight"] = ((Wt,), F32)
    lay["text_model.final_layer_norm.bias"] = ((Wt,), F32)
    lay["text_model.head.weight"] = ((embed_dim, Wt), F32)
    lay["text_model.head.bias"] = ((embed_dim,), F32)
    lay["vision_model.embeddings.patch_embedding.weight"] = ((Wv, 3, patch_size, patch_size), F32)
    lay["vision_model.embeddings.patch_embedding.bias"] = ((Wv,), F32)
    lay["vision_model.embeddings.position_embedding.weight"] = ((g * g, Wv), F32)
    lay.update(_hf_layers("vision_model.", Wv, vision_mlp, vision_layers))
    lay["vision_model.post_layernorm.weight"] = ((Wv,), F32)
    lay["vision_model.post_layernorm.bias"] = ((Wv,), F32)
    lay["vision_model.head.probe"] = ((1, 1, Wv), F32)
    lay["vision_model.head.attention.in_proj_weight"] = ((3 * Wv, Wv), F32)
    lay["vision_model.head.attention.in_proj_bias"] = ((3 * Wv,), F32)
    lay["vision_model.head.attention.out_proj.weight"] = ((Wv, Wv), F32)
    lay["vision_model.head.attention.out_proj.bias"] = ((Wv,), F32)
    lay["vision_model.head.layernorm.weight"] = ((Wv,), F32)
    lay["vision_model.head.layernorm.bias"] = ((Wv,), F32)
    lay["vision_model.head.mlp.fc1.weight"] = ((vision_mlp, Wv), F32)
    lay["vision_model.head.mlp.fc1.bias"] = ((vision_mlp,), F32)
    lay["vision_model.head.mlp.fc2.weight"] = ((Wv, vision_mlp), F32)
    lay["vision_model.head.mlp.fc2.bias"] = ((Wv,), F32)
    return lay


def split_keys(keys: Iterable[str], prefixes: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split ``keys`` into those starting with one of ``prefixes`` and the rest."""
    keys = list(keys)
    inside = [k for k in keys if any(k.startswith(p) for p in prefixes)]
    inside_set = set(inside)
    return inside, [k for k in keys if k not in inside_set]


def tensor_shape_str(t: torch.Tensor | None) -> str:
    return "None" if t is None else str(tuple(t.shape))
