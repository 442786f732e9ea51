"""Optimizer parameter groups for MFuser: weight decay off for norms and embeddings; frozen params out."""
from typing import Any, Dict, List, Sequence

from torch import nn

__all__ = ["NO_DECAY_KEYWORDS", "NORM_TYPES", "get_mfuser_optimizer_params"]

# Substrings of *full* parameter names that get no weight decay (published: "norm" everywhere;
# EVA/SigLIP configs add level_embed and query_embed; query_feat and text_pos are their siblings in the head).
NO_DECAY_KEYWORDS = ("norm", "level_embed", "query_embed", "query_feat", "text_pos")

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def get_mfuser_optimizer_params(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    no_decay_keywords: Sequence[str] = NO_DECAY_KEYWORDS,
) -> List[Dict[str, Any]]:
    """Two parameter groups (decay / no decay) over the *trainable* parameters of ``model``.

    Args:
        model: the model; parameters with ``requires_grad=False`` (frozen encoders, text tower) are
            left out, so they get neither updates nor optimizer state.
        base_lr: learning rate of both groups.
        weight_decay: decay of ordinary weights (1e-4 CLIP, 1e-5 EVA02/SigLIP in the published configs).
        weight_decay_norm: decay of parameters of normalisation modules and of parameters whose full name
            contains one of ``no_decay_keywords``.

    Returns:
        list of ``{"params": [...], "lr": base_lr, "weight_decay": ...}`` (empty groups dropped).
    """
    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        for param_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, NORM_TYPES) or any(k in full for k in no_decay_keywords):
                no_decay.append(p)
            else:
                decay.append(p)
    if not decay and not no_decay:
        raise ValueError("get_mfuser_optimizer_params: the model has no trainable parameters")
    groups = [
        {"params": decay, "lr": base_lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": base_lr, "weight_decay": weight_decay_norm},
    ]
    return [g for g in groups if g["params"]]


def count_trainable(model: nn.Module) -> int:
    """Number of trainable parameter elements (for logs)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__.append("count_trainable")
