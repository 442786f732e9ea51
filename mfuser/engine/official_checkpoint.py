"""Published MFuser checkpoints (the official MMSegmentation ``iter_*.pth`` files) -> this project's MFuser.

An official checkpoint is ``{"meta": {...}, "state_dict": {...}, "optimizer": {...}}`` written by mmcv's
``save_checkpoint``; its ``state_dict`` holds every tensor of the official segmentor, the frozen encoders included
(key layouts: ``shared/reference/manifests/mfuser_official_{clip,eva,siglip}.json``, summarised in
``docs/reference.md``). :func:`convert_official_checkpoint` maps every key onto the names of :class:`MFuser`:

* the trainable parts (MVFusers, projections, pyramid, MTEnhancer, contexts, head) by the renaming table
  :data:`OFFICIAL_RENAMES` (a pure renaming: same tensors, same shapes);
* the frozen encoders by each encoder's own converter for its official pretrained file
  (``OfficialCheckpointLoader.convert_official_state_dict``): the official segmentor stores them under the file's
  names with the file prefix removed (``backbone.dinov2.*``, the VLM image tower as ``backbone.*``, its text tower
  as ``text_encoder.*``), already holding the resized kernels / interpolated position embeddings;
* a short list of tensors is dropped on purpose, each with its reason (:func:`drop_reason`).

Anything else is an error that names the file and the key, and so is every shape that differs from the model's.
The same renaming table gives the official name of a parameter (:func:`official_name`), which the optimizer uses to
apply the official weight-decay rules (substring matches on official names).
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from mfuser.modeling.encoders.checkpoints import CheckpointError, CheckpointMismatchError

__all__ = [
    "OFFICIAL_RENAMES",
    "VARIANTS",
    "ConversionReport",
    "convert_official_checkpoint",
    "detect_variant",
    "drop_reason",
    "is_official_checkpoint",
    "load_checkpoint_file",
    "model_variant",
    "official_name",
    "read_official_checkpoint",
]

logger = logging.getLogger(__name__)

VARIANTS = ("clip", "eva02", "siglip")

# (official template, this project's template). "{i}" stands for a block / layer index; a template ending in "."
# renames a prefix (the rest of the key is kept), any other template renames one whole key.
_PD, _TD = "decode_head.pixel_decoder.", "decode_head.transformer_decoder."
_OPD, _OTD = "head.pixel_decoder.", "head.transformer_decoder."
OFFICIAL_RENAMES: Tuple[Tuple[str, str], ...] = (
    ("contexts", "text_encoder.contexts"),
    ("gamma", "text_enhancer.gamma"),
    ("context_decoder.", "text_enhancer."),
    ("backbone.adapter.{i}.", "backbone.fusers.{i}."),
    ("backbone.adapter_proj1.{i}.", "backbone.proj_in.{i}."),
    ("backbone.adapter_proj2.{i}.", "backbone.proj_out.{i}."),
    ("backbone.adapter_proj3.", "backbone.proj_final."),
    ("backbone.fpn1.", "backbone.pyramid.up4."),
    ("backbone.fpn2.0.", "backbone.pyramid.up2."),
    (_PD + "input_convs.{i}.conv.", _OPD + "input_proj.{i}.0."),
    (_PD + "input_convs.{i}.gn.", _OPD + "input_proj.{i}.1."),
    (_PD + "encoder.layers.{i}.attentions.0.", _OPD + "layers.{i}.self_attn."),
    (_PD + "encoder.layers.{i}.attentions.1.attn.", _OPD + "layers.{i}.cross_attn."),
    (_PD + "encoder.layers.{i}.ffns.0.layers.0.0.", _OPD + "layers.{i}.linear1."),
    (_PD + "encoder.layers.{i}.ffns.0.layers.1.", _OPD + "layers.{i}.linear2."),
    (_PD + "encoder.layers.{i}.norms.0.", _OPD + "layers.{i}.norm1."),
    (_PD + "encoder.layers.{i}.norms.1.", _OPD + "layers.{i}.norm2."),
    (_PD + "encoder.layers.{i}.norms.2.", _OPD + "layers.{i}.norm3."),
    (_PD + "encoder.post_norm.", _OPD + "encoder_norm."),
    (_PD + "level_encoding.weight", _OPD + "level_embed"),
    (_PD + "lateral_convs.{i}.conv.", _OPD + "lateral_convs.{i}."),
    (_PD + "lateral_convs.{i}.gn.", _OPD + "lateral_convs.{i}.norm."),
    (_PD + "output_convs.{i}.conv.", _OPD + "output_convs.{i}."),
    (_PD + "output_convs.{i}.gn.", _OPD + "output_convs.{i}.norm."),
    (_PD + "mask_feature.", _OPD + "mask_features."),
    (_PD + "text_proj.", _OPD + "text_proj."),
    (_PD + "text_pos_embed.", _OPD + "text_pos."),
    # transformer decoder: operation_order puts the masked cross-attention first
    (_TD + "layers.{i}.attentions.0.attn.", _OTD + "layers.{i}.cross_attn."),
    (_TD + "layers.{i}.attentions.1.attn.", _OTD + "layers.{i}.self_attn."),
    (_TD + "layers.{i}.ffns.0.layers.0.0.", _OTD + "layers.{i}.linear1."),
    (_TD + "layers.{i}.ffns.0.layers.1.", _OTD + "layers.{i}.linear2."),
    (_TD + "layers.{i}.norms.0.", _OTD + "layers.{i}.norm1."),
    (_TD + "layers.{i}.norms.1.", _OTD + "layers.{i}.norm2."),
    (_TD + "layers.{i}.norms.2.", _OTD + "layers.{i}.norm3."),
    (_TD + "post_norm.", _OTD + "decoder_norm."),
    ("decode_head.text_proj.", _OTD + "query_feat."),
    ("decode_head.query_embed.", _OTD + "query_embed."),
    ("decode_head.level_embed.", _OTD + "level_embed."),
    ("decode_head.cls_embed.", _OTD + "class_embed."),
    ("decode_head.mask_embed.", _OTD + "mask_embed."),
)


def _compile(template: str) -> Tuple[re.Pattern, bool]:
    prefix = template.endswith(".")
    body = re.escape(template).replace(re.escape("{i}"), r"(\d+)")
    return re.compile("^" + body + ("(.*)$" if prefix else "$")), prefix


def _fill(template: str, groups: Sequence[str], rest: str) -> str:
    out = template
    for g in groups:
        out = out.replace("{i}", g, 1)
    return out + rest


# The most specific template first (``lateral_convs.{i}.norm.`` before ``lateral_convs.{i}.``).
_FORWARD = sorted(((_compile(o), o, t) for o, t in OFFICIAL_RENAMES), key=lambda r: -len(r[1]))
_BACKWARD = sorted(((_compile(t), t, o) for o, t in OFFICIAL_RENAMES), key=lambda r: -len(r[1]))


def _rename(key: str, rules) -> str | None:
    for (pattern, prefix), _, target in rules:
        m = pattern.match(key)
        if m:
            groups = m.groups()
            return _fill(target, groups[:-1] if prefix else groups, groups[-1] if prefix else "")
    return None


def official_name(name: str) -> str | None:
    """The official name of one of this project's trainable parameters (None for frozen encoder parameters).

    E.g. ``head.pixel_decoder.level_embed`` -> ``decode_head.pixel_decoder.level_encoding.weight``,
    ``text_encoder.contexts`` -> ``contexts``.
    """
    return _rename(name, _BACKWARD)


# Official keys dropped on purpose (pattern, variants or None for all, reason).
_DROPPED: Tuple[Tuple[str, Tuple[str, ...] | None, str], ...] = (
    (r"random_text", ("eva02",), "built by the official EVA02 segmentor but never used in its forward"),
    (r"backbone\.adapter_proj[123]\..*", ("siglip",),
     "built by the official SigLIP backbone but never called (the projections are CLIP-only)"),
    (r"backbone\.dinov2\.mask_token", None, "DINOv2's iBOT mask token: pretraining only, unused by MFuser"),
    (r".*rope\.freqs_(cos|sin)", ("eva02",), "EVA02 RoPE table (and its per-block aliases): recomputed per grid"),
    (r"text_encoder\.attn_mask", ("eva02",), "non-persistent buffer that mmcv also saved: the causal mask"),
    (r".*embeddings\.position_ids", ("siglip",), "non-persistent buffer that mmcv also saved: position ids"),
)


def drop_reason(key: str, variant: str) -> str | None:
    """Why an official key is deliberately not converted (None: it must be converted)."""
    for pattern, variants, reason in _DROPPED:
        if (variants is None or variant in variants) and re.fullmatch(pattern, key):
            return reason
    return None


# Where each variant's frozen towers live in the official state dict, and the prefix of their pretrained file.
_VLM_FILE_PREFIX = {"clip": "visual.", "eva02": "visual.", "siglip": "vision_model."}
_TEXT_FILE_PREFIX = {"clip": "", "eva02": "text.", "siglip": "text_model."}
# Pretrained-file keys an official MFuser checkpoint cannot hold (SigLIP's score calibration lives in plain
# attributes of the official model, read from the pretrained file).
_TEXT_FILE_OPTIONAL = {"siglip": ("logit_scale", "logit_bias")}

# Keys that identify each variant (all must be present).
_SIGNATURES = {
    "clip": ("backbone.conv1.weight", "backbone.class_embedding", "backbone.adapter_proj3.weight"),
    "eva02": ("backbone.blocks.0.attn.q_proj.weight", "backbone.blocks.0.mlp.w1.weight"),
    "siglip": ("backbone.embeddings.patch_embedding.weight", "text_encoder.head.weight"),
}
_META_TYPES = {"clip": "MFuser_CLIP", "eva02": "MFuser_EVA_CLIP", "siglip": "MFuser_SIGLIP"}


def is_official_checkpoint(obj: Any) -> bool:
    """True for a loaded official MFuser checkpoint (``{'state_dict': ...}`` with the segmentor's top-level keys)."""
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        return False
    return any(k.startswith("decode_head.") for k in sd) and any(k.startswith("backbone.dinov2.") for k in sd)


def detect_variant(state_dict: Dict[str, Any], meta: dict | None = None, source: str = "<checkpoint>") -> str:
    """"clip", "eva02" or "siglip" from the keys (and ``meta['config']`` when present; they must agree)."""
    found = [v for v, keys in _SIGNATURES.items() if all(k in state_dict for k in keys)]
    if len(found) != 1:
        raise CheckpointMismatchError(
            f"{source}: cannot tell the MFuser variant from the keys (matches {found or 'none'} of {list(VARIANTS)}); "
            "expected an official MFuser checkpoint of the CLIP, EVA02 or SigLIP configuration")
    variant = found[0]
    config = (meta or {}).get("config") if isinstance(meta, dict) else None
    if isinstance(config, str):
        named = [v for v, t in _META_TYPES.items() if re.search(rf"type\s*=\s*['\"]{t}['\"]", config)]
        if named and named != [variant]:
            raise CheckpointMismatchError(
                f"{source}: meta.config builds {named[0]} ({_META_TYPES[named[0]]}) but the weights are {variant}'s")
    return variant


def model_variant(model: nn.Module) -> str:
    """The variant an :class:`MFuser` model is built as, from its VLM image encoder."""
    from mfuser.modeling.encoders import CLIPVisionEncoder, EVA02VisionEncoder, SigLIPVisionEncoder

    vlm = model.backbone.vlm
    for variant, cls in (("clip", CLIPVisionEncoder), ("eva02", EVA02VisionEncoder), ("siglip", SigLIPVisionEncoder)):
        if isinstance(vlm, cls):
            return variant
    raise CheckpointMismatchError(f"official MFuser checkpoints fit models with a CLIP, EVA02 or SigLIP image "
                                  f"encoder; this model's VLM is {type(vlm).__name__}")


@dataclass
class ConversionReport:
    """What :func:`convert_official_checkpoint` did.

    Attributes:
        source: the file (or a description).
        variant: "clip", "eva02" or "siglip".
        renamed: official key -> this project's key, for the trainable parts.
        frozen: official key -> prefix of the module it was converted into, for the frozen encoders (the
            encoders' converters may rename, split or merge tensors, so there is no one-to-one key map).
        dropped: official key -> reason, for tensors deliberately not converted.
        adapted: shape adaptations done by the encoders' converters (none for a published checkpoint).
        left_out: converted frozen keys not written (``keep_frozen=False``).
        other_entries: top-level entries of the file other than ``state_dict`` (``meta``, ``optimizer``), not kept.
    """

    source: str
    variant: str
    renamed: Dict[str, str] = field(default_factory=dict)
    frozen: Dict[str, str] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    adapted: List[str] = field(default_factory=list)
    left_out: List[str] = field(default_factory=list)
    other_entries: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.source}: official MFuser ({self.variant}) checkpoint",
            f"  mapped: {len(self.renamed)} trainable-part keys renamed, {len(self.frozen)} frozen-encoder keys "
            "converted by the encoders' own loaders",
        ]
        if self.left_out:
            lines.append(f"  left out: {len(self.left_out)} frozen-encoder tensors (the model loads them from "
                         "its pretrained files)")
        by_reason: Dict[str, List[str]] = {}
        for k, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(k)
        for reason, keys in by_reason.items():
            shown = ", ".join(keys[:3]) + (f", ... ({len(keys)} keys)" if len(keys) > 3 else "")
            lines.append(f"  dropped: {shown}: {reason}")
        for entry in self.other_entries:
            lines.append(f"  dropped: '{entry}' entry (not model weights)")
        for a in self.adapted:
            lines.append(f"  adapted: {a}")
        lines.append("  unexplained: none")
        return "\n".join(lines)


def _numpy_globals() -> list:
    """numpy types a weights-only load may unpickle: mmcv writes numpy scalars / arrays into ``meta`` (e.g. a
    ``hook_msgs.best_score``). Data types only, no code: safe to allow."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype,
            *(type(np.dtype(t)) for t in dtypes)]


def load_checkpoint_file(path: str):
    """``torch.load(path)`` with ``weights_only=True`` (no code in the file is run), numpy data types allowed.

    Raises:
        CheckpointError: naming the file: truncated / corrupt, or holding objects a weights-only load refuses.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        msg = next((line for line in lines if "Unsupported global" in line), lines[0] if lines else "")
        raise CheckpointError(f"{path}: holds Python objects that a safe (weights-only) load refuses: {msg[:300]}. "
                              "Only load files you trust with torch.load(weights_only=False) yourself.") from None
    except Exception as e:  # zip / stream errors of a truncated or corrupt file, EOFError, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {msg[:300]}") from None


def read_official_checkpoint(path: str) -> dict:
    """Load an official checkpoint (:func:`load_checkpoint_file`) and check that it is one."""
    obj = load_checkpoint_file(path)
    if not is_official_checkpoint(obj):
        keys = list(obj.get("state_dict", obj)) if isinstance(obj, dict) else []
        raise CheckpointMismatchError(
            f"{path}: not an official MFuser checkpoint: expected a dict with 'state_dict' holding "
            f"'decode_head.*' and 'backbone.dinov2.*' keys; found {type(obj).__name__} with keys {keys[:5]}")
    return obj


def _module_prefix(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name + "." if name else ""
    raise ValueError(f"{type(module).__name__} is not a submodule of the model")


def _persistent_state(model: nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_official_checkpoint(
    checkpoint: dict,
    model: nn.Module,
    *,
    source: str = "<checkpoint>",
    keep_frozen: bool = True,
    variant: str | None = None,
) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Convert a loaded official checkpoint into a state dict of ``model``.

    Args:
        checkpoint: ``{'state_dict': {...}, 'meta': ..., 'optimizer': ...}`` as loaded from an ``iter_*.pth``
            (a bare official state dict is accepted too).
        model: the :class:`MFuser` the result is for (its config: ``configs/common/models/mfuser_{variant}.py``).
            It may live on the ``meta`` device: only its key names, shapes and encoder converters are used.
        source: file name for messages.
        keep_frozen: also return the frozen encoders' tensors (the result is then self-contained); False leaves them
            out, for a model that loads them from its pretrained files.
        variant: the expected variant; a file of another variant is refused. Default: the model's.

    Returns:
        (state_dict in this project's names (float32 / int64 as in the file), :class:`ConversionReport`).

    Raises:
        CheckpointMismatchError: another variant, an unexplained key, a tensor the model lacks or one the checkpoint
            lacks, or a shape that differs; the message names the file, the key(s) and what was expected.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f"{source}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    sd = checkpoint["state_dict"] if isinstance(checkpoint.get("state_dict"), dict) else checkpoint
    meta = checkpoint.get("meta") if sd is not checkpoint else None
    file_variant = detect_variant(sd, meta, source)
    want = variant or model_variant(model)
    if want not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {want!r}")
    if file_variant != want:
        raise CheckpointMismatchError(
            f"{source}: an official MFuser {file_variant} checkpoint, but the model / --variant is {want}; use "
            f"configs/common/models/mfuser_{file_variant}.py (or a configs/mfuser/mfuser_{file_variant}_* config)")
    others = [k for k in checkpoint if k != "state_dict"] if sd is not checkpoint else []
    report = ConversionReport(source=source, variant=want, other_entries=others)

    out: Dict[str, torch.Tensor] = {}
    origin: Dict[str, str] = {}  # our key -> official key (for messages)
    groups: Dict[str, Dict[str, torch.Tensor]] = {"vfm": {}, "vlm": {}, "text": {}}
    unexplained = []
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            unexplained.append(f"{key} (not a tensor: {type(value).__name__})")
            continue
        reason = drop_reason(key, want)
        if reason is not None:
            report.dropped[key] = reason
            continue
        ours = _rename(key, _FORWARD)
        if ours is not None:
            out[ours] = value
            origin[ours] = key
            report.renamed[key] = ours
        elif key.startswith("backbone.dinov2."):
            groups["vfm"][key[len("backbone.dinov2."):]] = value
        elif key.startswith("backbone."):
            groups["vlm"][_VLM_FILE_PREFIX[want] + key[len("backbone."):]] = value
        elif key.startswith("text_encoder."):
            groups["text"][_TEXT_FILE_PREFIX[want] + key[len("text_encoder."):]] = value
        else:
            unexplained.append(key)
    if unexplained:
        raise CheckpointMismatchError(
            f"{source}: {len(unexplained)} keys of the official {want} checkpoint have no counterpart in MFuser: "
            + ", ".join(unexplained[:10]) + (" ..." if len(unexplained) > 10 else ""))

    encoders = {"vfm": model.backbone.vfm, "vlm": model.backbone.vlm, "text": model.text_encoder}
    official_prefix = {"vfm": "backbone.dinov2.", "vlm": "backbone.", "text": "text_encoder."}
    file_prefix = {"vfm": "", "vlm": _VLM_FILE_PREFIX[want], "text": _TEXT_FILE_PREFIX[want]}
    for part, enc in encoders.items():
        if not groups[part]:
            raise CheckpointMismatchError(f"{source}: no frozen {enc.model_name} tensors "
                                          f"({official_prefix[part]}*) in the checkpoint")
        converted, _, enc_report = enc.convert_official_state_dict(
            groups[part], source=f"{source} [{official_prefix[part]}*]", strict=True,
            optional=_TEXT_FILE_OPTIONAL.get(want, ()) if part == "text" else ())
        for k in enc_report.ignored:
            official = official_prefix[part] + k[len(file_prefix[part]):]
            report.dropped[official] = drop_reason(official, want) or "not used by this encoder"
        report.adapted += enc_report.adapted
        target_prefix = _module_prefix(model, enc._checkpoint_target())
        for k, v in converted.items():
            out[target_prefix + k] = v
            origin[target_prefix + k] = f"{official_prefix[part]}* -> {k}"
        for k in enc_report.matched:
            report.frozen[official_prefix[part] + k[len(file_prefix[part]):]] = target_prefix

    expected = _persistent_state(model)
    missing = [k for k in expected if k not in out]
    extra = [k for k in out if k not in expected]
    wrong = [f"{origin[k]} -> {k}: checkpoint {tuple(v.shape)}, model {expected[k]}"
             for k, v in out.items() if k in expected and tuple(v.shape) != expected[k]]
    if missing or extra or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shapes differ (is the model built from the matching config?): "
                         + "; ".join(wrong[:6]))
        if missing:
            parts.append(f"{len(missing)} model tensors not in the checkpoint: " + ", ".join(missing[:8]))
        if extra:
            parts.append(f"{len(extra)} converted tensors the model lacks: "
                         + ", ".join(f"{origin[k]} -> {k}" for k in extra[:8]))
        raise CheckpointMismatchError(f"{source}: does not fit MFuser ({want}): " + "\n  ".join(parts))

    if not keep_frozen:
        frozen_prefixes = tuple(_module_prefix(model, e._checkpoint_target()) for e in encoders.values())
        report.left_out = [k for k in out if k.startswith(frozen_prefixes)]
        out = {k: v for k, v in out.items() if not k.startswith(frozen_prefixes)}
    # keep the model's state-dict order: diffs and printed reports read naturally
    ordered = {k: out[k] for k in expected if k in out}
    return ordered, report
