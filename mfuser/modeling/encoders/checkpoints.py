"""Readers, key checks and load reports for the four official encoder files MFuser uses.

The files (docs/reference.md, "Encoders and token grids"):

======================================  =======================  ============================================
file                                    format                   naming
======================================  =======================  ============================================
``dinov2_vitl14_pretrain.pth``          flat torch state dict    facebookresearch/dinov2 ``DinoVisionTransformer``
``ViT-L-14-336px.pt``                   TorchScript archive      OpenAI CLIP (vision under ``visual.``, text top-level)
``EVA02_CLIP_L_336_psz14_s6B.pt``       flat torch state dict    EVA-CLIP ``CustomCLIP`` (``visual.``, ``text.``)
``siglip_vitl16_384.pth``               flat torch state dict    HF transformers ``SiglipModel``
======================================  =======================  ============================================

This module only *reads* files safely (``torch.load(weights_only=True)``; TorchScript archives through
``torch.jit.load``, which never unpickles arbitrary Python objects), checks a file's keys against an expected
layout and reports what a load matched. Each family's official key layout (``*_layout``: ordered
``{name: (shape, dtype)}``) and its key conversion onto the timm / open_clip module names live in the family's
module (``dinov2.py``, ``clip.py``, ``eva02.py``, ``siglip.py``); ``families.py`` lists the four files.
"""
from __future__ import annotations

import os
import warnings
import zipfile
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
    "load_converted",
    "split_keys",
    "tensor_shape_str",
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


def split_keys(keys: Iterable[str], prefixes: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split ``keys`` into those starting with one of ``prefixes`` and the rest."""
    keys = list(keys)
    inside = [k for k in keys if any(k.startswith(p) for p in prefixes)]
    inside_set = set(inside)
    return inside, [k for k in keys if k not in inside_set]


def tensor_shape_str(t: torch.Tensor | None) -> str:
    return "None" if t is None else str(tuple(t.shape))
