"""FLOP counting for MFuser models: fvcore with the handles its default table lacks (the one counter in the project).

One fused multiply-add is one flop (fvcore's convention). Added op handles, each counted with fvcore's conventions:
``scaled_dot_product_attention`` (without it the ViTs' attention would be missed), ``_native_multi_head_attention``
(``nn.MultiheadAttention``'s inference fast path), ``_convolution_mode`` (padding="same"/"valid" convs) and
``rms_norm``. Ops fvcore does not count (elementwise ops; the selective scan, a custom autograd function) are
returned by :func:`count_flops` so that callers can name them instead of dropping them silently.

The model's attention (``mfuser.layers.attention``) keeps PyTorch's ``scaled_dot_product_attention`` op while it is
traced, so its explicit CPU form (two matmuls around a softmax) never reaches the counter; were it traced, fvcore
would count those two matmuls as the same multiply-adds as the op's handle here (tests/layers/test_attention.py).
"""
from __future__ import annotations

import logging
import math
from collections import Counter

import torch
from torch import nn

__all__ = ["FunctionModule", "count_flops", "extra_flop_handles", "image_flops"]

def _sdpa_flop_jit(inputs, outputs):
    """aten::scaled_dot_product_attention: q k^T and attn v, as multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _native_mha_flop_jit(inputs, outputs):
    """aten::_native_multi_head_attention (nn.MultiheadAttention's inference fast path): projections + attention."""
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])  # (B, Lq, E), (B, Lk, E)
    batch, lq, lk, e = math.prod(q[:-2]), q[-2], k[-2], q[-1]
    return batch * (2 * lq * e * e + 2 * lk * e * e + 2 * lq * lk * e)


def _conv_mode_flop_jit(inputs, outputs):
    """aten::_convolution_mode (a convolution with padding="same"/"valid"), counted as fvcore counts convs."""
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    return conv_flop_count(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]))


def extra_flop_handles() -> dict:
    """Ops fvcore's default table lacks, counted with fvcore's conventions (see the module docstring)."""
    from fvcore.nn.jit_handles import norm_flop_counter

    return {
        "aten::scaled_dot_product_attention": _sdpa_flop_jit,
        "aten::_native_multi_head_attention": _native_mha_flop_jit,
        "aten::_convolution_mode": _conv_mode_flop_jit,
        "aten::rms_norm": norm_flop_counter(2),
    }


class FunctionModule(nn.Module):
    """Turns a function of ``model`` into a module fvcore can trace (``model`` is a submodule for by_module)."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(self.model, *args)


def count_flops(module: nn.Module, inputs: tuple) -> tuple[float, dict[str, int], Counter]:
    """(total, by_module, unsupported op counts) by fvcore (one fused multiply-add = one flop)."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**extra_flop_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    total = float(analysis.total())
    return total, analysis.by_module(), Counter(analysis.unsupported_ops())


def image_flops(model: nn.Module, size: tuple[int, int]) -> tuple[float, Counter]:
    """FLOPs of one whole-image inference of ``model`` (an MFuser in eval mode) on a random (H, W) = ``size`` image.

    Returns:
        (total flops, uncounted ops {name: count}).
    """
    was_training = model.training
    saved = {k: getattr(model, k) for k in ("inference_mode", "crop_size") if hasattr(model, k)}
    model.eval()
    if saved:
        model.inference_mode = "whole"
        model.crop_size = tuple(size)
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    inputs = ([{"image": image, "height": size[0], "width": size[1]}],)
    try:
        with torch.no_grad():
            total, _, uncounted = count_flops(model, inputs)
    finally:  # the caller's model comes back as it was
        for k, v in saved.items():
            setattr(model, k, v)
        model.train(was_training)
    return total, uncounted
