"""Optimizer parameter groups for MFuser (frozen parameters are never handed to the optimizer).

Two rules:

* the official one (``custom_keys`` given, the published configs): mmcv's ``paramwise_cfg.custom_keys`` --
  a parameter whose *official* name contains a key (longest key first, then alphabetical) gets that key's
  ``lr_mult`` / ``decay_mult``; every other parameter gets the base lr and weight decay. Names are translated to the
  official ones by the checkpoint-conversion table (:func:`mfuser.engine.official_checkpoint.official_name`), so the
  rules select exactly the official parameters: e.g. this project's ``text_encoder.contexts`` is the official
  top-level ``contexts`` and is *not* caught by the official ``'text_encoder': lr_mult 0`` rule, and the pixel
  decoder's ``level_embed`` is the official ``level_encoding``, which the official ``'level_embed'`` rule misses.
* this project's own (``custom_keys=None``): no decay for every normalisation module (GroupNorm and BatchNorm
  included) and for names containing one of ``no_decay_keywords``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from torch import nn

from .official_checkpoint import official_name

__all__ = [
    "NO_DECAY_KEYWORDS",
    "NORM_TYPES",
    "OFFICIAL_CUSTOM_KEYS",
    "count_trainable",
    "get_mfuser_optimizer_params",
]

# This project's rule: substrings of *full* parameter names that get no weight decay.
NO_DECAY_KEYWORDS = ("norm", "level_embed", "query_embed", "query_feat", "text_pos")

# The official ``optimizer.paramwise_cfg.custom_keys`` of configs/mfuser/mfuser_{clip,eva,siglip}_vit-l_*.py.
OFFICIAL_CUSTOM_KEYS: Dict[str, Dict[str, Dict[str, float]]] = {
    "clip": {"text_encoder": {"lr_mult": 0.0}, "norm": {"decay_mult": 0.0}},
    "eva02": {"text_encoder": {"lr_mult": 0.0}, "level_embed": {"decay_mult": 0.0},
              "query_embed": {"decay_mult": 0.0}, "norm": {"decay_mult": 0.0}},
}
OFFICIAL_CUSTOM_KEYS["siglip"] = OFFICIAL_CUSTOM_KEYS["eva02"]

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _trainable(model: nn.Module):
    """(module, full name, param) for every trainable parameter, each once."""
    seen = set()
    for module_name, module in model.named_modules():
        for param_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            yield module, (f"{module_name}.{param_name}" if module_name else param_name), p


def _official_groups(model, base_lr, weight_decay, custom_keys) -> List[Dict[str, Any]]:
    for key, opts in custom_keys.items():
        unknown = set(opts) - {"lr_mult", "decay_mult"}
        if unknown:
            raise ValueError(f"custom_keys[{key!r}]: unknown options {sorted(unknown)}; use lr_mult / decay_mult")
    keys = sorted(sorted(custom_keys), key=len, reverse=True)  # mmcv's order: longest first, then alphabetical
    groups: Dict[tuple, List[nn.Parameter]] = {}
    for _, name, p in _trainable(model):
        official = official_name(name) or name
        rule = next((custom_keys[k] for k in keys if k in official), {})
        lr = base_lr * rule.get("lr_mult", 1.0)
        wd = weight_decay * rule.get("decay_mult", 1.0)
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def get_mfuser_optimizer_params(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    no_decay_keywords: Sequence[str] = NO_DECAY_KEYWORDS,
    custom_keys: Mapping[str, Mapping[str, float]] | None = None,
) -> List[Dict[str, Any]]:
    """Parameter groups over the *trainable* parameters of ``model``.

    Args:
        model: the model; parameters with ``requires_grad=False`` (frozen encoders, text tower) are left out, so
            they get neither updates nor optimizer state.
        base_lr: base learning rate.
        weight_decay: decay of ordinary weights (1e-4 CLIP, 1e-5 EVA02/SigLIP in the published configs).
        custom_keys: the official rule (module docstring), ``{substring: {"lr_mult": x, "decay_mult": y}}`` matched
            on official parameter names; :data:`OFFICIAL_CUSTOM_KEYS` has the published values per variant.
            None: this project's rule below.
        weight_decay_norm: (this project's rule) decay of parameters of normalisation modules and of parameters
            whose full name contains one of ``no_decay_keywords``.

    Returns:
        list of ``{"params": [...], "lr": ..., "weight_decay": ...}`` (no empty group).
    """
    if custom_keys is not None:
        groups = _official_groups(model, base_lr, weight_decay, dict(custom_keys))
    else:
        decay, no_decay = [], []
        for module, name, p in _trainable(model):
            if isinstance(module, NORM_TYPES) or any(k in name for k in no_decay_keywords):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [
            {"params": decay, "lr": base_lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": base_lr, "weight_decay": weight_decay_norm},
        ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("get_mfuser_optimizer_params: the model has no trainable parameters")
    return groups


def count_trainable(model: nn.Module) -> int:
    """Number of trainable parameter elements (for logs)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
