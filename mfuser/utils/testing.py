"""Helpers for tests (after detectron2's ``detectron2/utils/testing.py``): random official encoder checkpoints.

``write_official_checkpoint(kind, path, size="full" | "tiny")`` writes a file whose key names, shapes, dtypes and
container equal the official one of ``kind`` (the family's ``layout`` and ``container`` in
:data:`mfuser.modeling.encoders.families.FAMILIES`, the layouts checked against the key manifests in the tests):
``torch.save`` of a flat dict for DINOv2 / EVA02 / SigLIP, a real TorchScript archive for OpenAI CLIP. ``"tiny"``
keeps every name but uses the family's ``tiny_layout`` (2 blocks, small widths); :func:`tiny_encoder_kwargs` gives
the matching encoder constructor arguments (the family's ``tiny_towers``). The values are random (LayerNorm weights
near 1, others N(0, 0.02)); they carry no pretrained knowledge.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings
from collections import OrderedDict
from typing import Dict

import torch
from torch import nn

from mfuser.modeling.encoders.families import KINDS, get_family

__all__ = ["KINDS", "official_layout", "random_state_dict", "write_official_checkpoint", "tiny_encoder_kwargs",
           "tiny_towers_kwargs"]

_SIZES = ("full", "tiny")


def tiny_encoder_kwargs(kind: str, tower: str = "vision") -> dict:
    """Constructor kwargs of the tiny encoder (``tower`` "vision" or "text") that loads a tiny ``kind`` file."""
    towers = get_family(kind).tiny_towers
    if tower not in towers:
        raise ValueError(f"{kind!r} has no {tower!r} tower (towers: {sorted(towers)})")
    return dict(towers[tower])


def tiny_towers_kwargs(kind: str) -> Dict[str, dict]:
    """``{tower: kwargs}`` of every tiny encoder of ``kind`` (the ``encoder_kwargs`` of ``check_pretrained``)."""
    return {t: dict(kw) for t, kw in get_family(kind).tiny_towers.items()}


def _layout_args(kind: str, size: str) -> dict:
    """Every argument of the family's layout function at ``size`` (defaults, updated by the tiny sizes)."""
    family = get_family(kind)
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, got {size!r}")
    args = {n: p.default for n, p in inspect.signature(family.layout).parameters.items()
            if p.default is not inspect.Parameter.empty}
    if size == "tiny":
        args.update(family.tiny_layout)
    return args


def official_layout(kind: str, size: str = "full") -> OrderedDict:
    """Ordered ``{name: (shape, dtype)}`` of the official ``kind`` file, full-size or tiny."""
    return get_family(kind).layout(**_layout_args(kind, size))


def random_state_dict(kind: str, size: str = "full", seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random tensors in the official layout of ``kind`` (file dtypes; EVA02 RoPE aliases share one tensor).

    0-dim int64 entries (the OpenAI archive's ``input_resolution`` / ``context_length`` / ``vocab_size``) hold the
    layout's own sizes.
    """
    args = _layout_args(kind, size)
    lay = get_family(kind).layout(**args)
    scalars = {"input_resolution": args.get("image_resolution"), "context_length": args.get("context_length"),
               "vocab_size": args.get("vocab_size")}
    g = torch.Generator().manual_seed(seed)
    shared: Dict[str, torch.Tensor] = {}
    sd = OrderedDict()
    for name, (shape, dtype) in lay.items():
        if dtype == torch.int64:
            sd[name] = torch.tensor(scalars[name], dtype=torch.int64)
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
    family = get_family(kind)
    sd = state_dict if state_dict is not None else random_state_dict(kind, size, seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if family.container == "torchscript":
        scripted = _torchscript_from_state_dict(sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(scripted, path)
    else:
        torch.save(dict(sd), path)
    return path
