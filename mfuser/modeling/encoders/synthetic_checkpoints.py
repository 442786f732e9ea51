"""Random checkpoints in the exact layout of the four official encoder files (for tests and tool checks).

``write_official_checkpoint(kind, path, size="full" | "tiny")`` writes a file whose key names, shapes, dtypes and
container equal the official one (``checkpoints.*_layout``, checked against the key manifests in the tests):
``torch.save`` of a flat dict for DINOv2 / EVA02 / SigLIP, a real TorchScript archive for OpenAI CLIP. ``"tiny"``
keeps every name but uses 2 blocks and small widths (``TINY_LAYOUTS``); ``tiny_encoder_kwargs`` gives the matching
encoder constructor arguments. The values are random (LayerNorm weights near 1, others N(0, 0.02)); they carry no
pretrained knowledge.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from typing import Dict

import torch
from torch import nn

from .checkpoints import clip_layout, dinov2_layout, eva02_layout, siglip_layout

__all__ = ["KINDS", "TINY_LAYOUTS", "official_layout", "random_state_dict", "write_official_checkpoint",
           "tiny_encoder_kwargs"]

KINDS = ("dinov2", "clip", "eva02", "siglip")
_LAYOUT_FNS = {"dinov2": dinov2_layout, "clip": clip_layout, "eva02": eva02_layout, "siglip": siglip_layout}

# Tiny files: same names, 2 blocks, widths 32, pretraining grids 5x5 (so loading always interpolates).
TINY_LAYOUTS: Dict[str, dict] = {
    "dinov2": dict(embed_dim=32, depth=2, patch_size=14, img_size=70),
    "clip": dict(embed_dim=24, image_resolution=70, vision_layers=2, vision_width=32, vision_patch_size=14,
                 context_length=77, vocab_size=49408, transformer_width=32, transformer_layers=2),
    "eva02": dict(embed_dim=24, vision_width=32, vision_layers=2, vision_heads=2, vision_mlp_hidden=85, patch_size=14,
                  img_size=70, context_length=77, vocab_size=49408, text_width=32, text_layers=2),
    "siglip": dict(vision_width=32, vision_layers=2, vision_mlp=128, patch_size=16, img_size=80, text_width=32,
                   text_layers=2, text_mlp=128, vocab_size=64, max_positions=64, embed_dim=32),
}

_TINY_KWARGS = {
    "dinov2": {"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, img_size=64)},
    "clip": {"vision": dict(width=32, layers=2, heads=2, patch_size=16, img_size=64, output_dim=24),
             "text": dict(width=32, layers=2, heads=2, output_dim=24)},
    "eva02": {"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=14, img_size=56, output_dim=24),
              "text": dict(width=32, layers=2, heads=2, output_dim=24)},
    "siglip": {"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, img_size=64),
               "text": dict(width=32, layers=2, heads=2, vocab_size=64, output_dim=32)},
}


def tiny_encoder_kwargs(kind: str, tower: str = "vision") -> dict:
    """Constructor kwargs of the tiny encoder (``tower`` "vision" or "text") that loads a tiny ``kind`` file."""
    _check_kind(kind)
    if tower not in _TINY_KWARGS[kind]:
        raise ValueError(f"{kind!r} has no {tower!r} tower (towers: {sorted(_TINY_KWARGS[kind])})")
    return dict(_TINY_KWARGS[kind][tower])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def official_layout(kind: str, size: str = "full") -> OrderedDict:
    """Ordered ``{name: (shape, dtype)}`` of the official ``kind`` file, full-size or tiny."""
    _check_kind(kind)
    if size not in ("full", "tiny"):
        raise ValueError(f"size must be 'full' or 'tiny', got {size!r}")
    return _LAYOUT_FNS[kind](**(TINY_LAYOUTS[kind] if size == "tiny" else {}))


def random_state_dict(kind: str, size: str = "full", seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random tensors in the official layout of ``kind`` (file dtypes; EVA02 RoPE aliases share one tensor)."""
    lay = official_layout(kind, size)
    g = torch.Generator().manual_seed(seed)
    extras = {"input_resolution": None, "context_length": None, "vocab_size": None}
    if kind == "clip":
        dims = TINY_LAYOUTS["clip"] if size == "tiny" else {}
        extras = {"input_resolution": dims.get("image_resolution", 336),
                  "context_length": dims.get("context_length", 77), "vocab_size": dims.get("vocab_size", 49408)}
    shared: Dict[str, torch.Tensor] = {}
    sd = OrderedDict()
    for name, (shape, dtype) in lay.items():
        if dtype == torch.int64:
            sd[name] = torch.tensor(extras[name], dtype=torch.int64)
            continue
        leaf = name.rsplit(".", 1)[-1]
        if "rope.freqs_" in name:  # one RoPE table aliased by every block, as in the real file
            if leaf not in shared:
                shared[leaf] = torch.randn(shape, generator=g).to(dtype)
            sd[name] = shared[leaf]
            continue
        t = torch.randn(shape, generator=g).mul_(0.02)
        is_norm = any(s in name for s in ("norm", "ln_", "layer_norm", "layernorm", "inner_attn_ln", "ffn_ln"))
        if is_norm and leaf == "weight":
            t.add_(1.0)
        elif leaf == "gamma":
            t.add_(0.1)
        elif name == "logit_scale":
            t.fill_(math.log(1 / 0.07) if kind != "siglip" else math.log(10.0))
        elif name == "logit_bias":
            t.fill_(-10.0)
        sd[name] = t.to(dtype)
    return sd


class _Node(nn.Module):
    """Plain container used to script a module tree whose state-dict names equal given keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_from_state_dict(sd: Dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    root = _Node()
    for name, t in sd.items():
        parts = name.split(".")
        mod = root
        for p in parts[:-1]:
            if not hasattr(mod, p):
                mod.add_module(p, _Node())
            mod = getattr(mod, p)
        if t.is_floating_point():
            mod.register_parameter(parts[-1], nn.Parameter(t, requires_grad=False))
        else:
            mod.register_buffer(parts[-1], t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(root)


def write_official_checkpoint(kind: str, path: str, size: str = "full", seed: int = 0,
                              state_dict: Dict[str, torch.Tensor] | None = None) -> str:
    """Write a random ``kind`` checkpoint (``"dinov2" | "clip" | "eva02" | "siglip"``) in the official container.

    Args:
        size: ``"full"`` (the published sizes: 1.2 / 0.9 / 0.86 / 2.6 GB) or ``"tiny"``.
        state_dict: write these tensors instead of random ones (must be in the official layout of ``kind``).
    Returns:
        ``path``.
    """
    sd = state_dict if state_dict is not None else random_state_dict(kind, size, seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if kind == "clip":
        scripted = _torchscript_from_state_dict(sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(scripted, path)
    else:
        torch.save(dict(sd), path)
    return path
