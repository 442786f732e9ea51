"""Scaled dot-product attention that picks, per call, the faster of two forms of the same function on a CPU.

* :func:`scaled_dot_product_attention`: ``softmax(q k^T / sqrt(D) + mask) v``, computed either by PyTorch's
  ``F.scaled_dot_product_attention`` (on a CPU its flash kernel) or by the explicit form below, chosen by
  :func:`use_explicit_attention`;
* :func:`multi_head_attention`: an ``nn.MultiheadAttention`` module's ``need_weights=False`` output computed from
  its own parameters on batch-first tensors, with the attention above; :class:`MultiheadAttention`, the module
  class whose calls do that (the heads build it; the CLIP tower's modules are converted in place);
* :func:`vit_attention` / :class:`ViTAttention`: the same for timm's ViT ``Attention`` module (DINOv2, SigLIP).

The modules keep the library modules' parameters and state-dict keys, and the model's module tree: a FLOP count
or a profile still attributes the attention to the same module as before.

Why: PyTorch's CPU flash kernel is built for long sequences. At the tiny model's sizes (a few thousand to a few
hundred thousand scores per call) its fixed costs dominate, and in bf16 its backward is 2-5x slower than three
plain ops; at ViT-L sizes it is up to 3x faster than the explicit form. ``nn.MultiheadAttention`` (batch_first)
also transposes its input to (L, B, C) before the in-projection, which sends the projection of a frozen weight
down torch.matmul's expand + bmm path (a copy of the weight per token); the helper projects the contiguous
batch-first tensor instead.

Explicit form: ``softmax((q * D^-0.5) @ k^T + mask, dtype=float32).to(dtype) @ v``: the softmax always in float32
(autocast's CPU policy runs softmax in float32, and the flash kernel accumulates in float32), the two matmuls in
the compute dtype (bf16 under autocast). Masks follow ``F.scaled_dot_product_attention``: a bool mask keeps
(attends to) the True entries, a float mask is added to the scores; a query row with no key left (all False /
all -inf) gives 0, with zero gradients, as PyTorch's CPU kernels do. A mask is added in the scores' dtype (a bool
one as 0 / -inf, as ``nn.MultiheadAttention`` converts its masks; autocast also hands PyTorch's op a bf16 mask):
one add, where a ``masked_fill`` would cost a slow bool-indexed pass forward and another backward. In bf16 the
scores are rounded to bf16 by the first matmul where the flash kernel keeps them in float32: a relative output
error of about 9e-3 against a float64 reference instead of 5e-3 (measured on N(0, 1.5^2) q and k,
(4, 2, 257, 32)); in fp32 the two agree to ~1e-6.

Rule (:func:`use_explicit_attention`), with N = B * H * Lq * Lk scores and D the head width:

* not a CPU tensor, or under ``torch.jit`` tracing / scripting (the FLOP counter, exports) -> PyTorch's op;
* compute dtype bfloat16 (the tensors' dtype, or autocast's while a CPU autocast is on): explicit when
  ``N <= 65536 * D`` (1M scores at D = 16, 2M at D = 32, 4M at D = 64);
* any other dtype (float32): explicit only when the keys are few and the queries many, ``Lk <= 32`` and
  ``Lq >= 256`` (then the flash kernel's per-block costs dominate; elsewhere in float32 it is as fast or faster),
  with the same ``N <= 65536 * D`` cap.

Measured on the development machine (AMD EPYC with AVX512-BF16), 1 thread, thread CPU time (not disturbed by
other processes), minimum over 3-30 calls of each form, alternating, on random tensors: explicit / flash time
ratio, forward+backward of ``out.float().sum()`` (train) and forward under no_grad (infer), bf16 = CPU autocast.
Below 1: explicit faster.

=============================  ========  ======  ==========  ==========  ==========  ==========
q shape (B, H, Lq, D), Lk      N         D       fp32 train  fp32 infer  bf16 train  bf16 infer
=============================  ========  ======  ==========  ==========  ==========  ==========
(4, 2, 257, 32), 257           0.53M     32      1.03        1.15        0.61        0.61
(4, 4, 1344, 16), 19           0.41M     16      0.79        0.81        0.24        0.60
(4, 4, 256, 16), 19            0.08M     16      0.84        0.80        0.17        0.57
(4, 4, 19, 16), 1024           0.31M     16      1.21        1.17        0.47        0.78
(4, 4, 19, 16), 19             0.006M    16      1.61        0.97        0.30        1.00
(4, 4, 1344, 16), 64           1.38M     16      1.37        3.21        1.00        0.73
(4, 4, 1344, 16), 128          2.75M     16      2.92        3.25        1.69        3.60
(1, 2, 1025, 32), 1025         2.10M     32      1.09        1.37        0.67        0.75
(8, 2, 577, 32), 577           5.33M     32      2.11        3.25        1.14        0.84
(1, 8, 5376, 32), 19           0.82M     32      0.83        0.95        0.31        0.58
(1, 8, 19, 32), 4096           0.62M     32      1.20        1.21        0.61        0.72
(1, 16, 401, 64), 401          2.57M     64      0.98        1.19        0.41        0.51
(1, 16, 577, 64), 577          5.33M     64      1.32        1.25        0.92        0.59
(1, 16, 1297, 64), 1297        26.9M     64      1.66        2.49        1.67        2.10
=============================  ========  ======  ==========  ==========  ==========  ==========

Rows 1, 2, 4 and 5 are calls of the tiny quickstart model (CLIP / DINOv2 self-attention, pixel-decoder text
cross-attention, transformer-decoder cross- and self-attention); (1, 8, 5376, 32) and (1, 8, 19, 32) are the
full-size heads at 512x512, (1, 16, 1297, 64) a full-size ViT-L/14 block (flash, unchanged).
On other devices PyTorch's op is always used: its GPU kernels are fused and fast at every size.

Effect, measured in one process against the library calls patched back in (same model and batches, 2 threads,
wall time, minimum over 30 (tiny) or 8 (full-size) alternating calls; new / old): tiny sizes, forward+backward in
bf16: CLIP tower attention (4, 257, 64) 0.36, DINOv2 attention 0.53, pixel-decoder text cross-attention 0.40,
masked decoder cross-attention 0.76, decoder self-attention 0.77 (fp32 0.83-1.01; inference bf16 0.35-0.88);
full size, fp32 and bf16, training and inference: ViT-L/14 attention 0.98-1.00, CLIP ViT-L in-projection +
attention (1, 1025, 1024) 0.96-1.00, pixel decoder (5376 -> 19) 0.70-0.97, masked decoder (19 -> 4096) 0.84-0.93.
Quickstart training step (tiny model, batch 4, 128x128, bf16 autocast): 0.272 -> 0.246 s median at 2 threads,
0.394 -> 0.336 s of CPU time at 1 thread; fp32 unchanged within noise (1.04 / 0.97).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from torch import nn

__all__ = ["MultiheadAttention", "ViTAttention", "multi_head_attention", "scaled_dot_product_attention",
           "use_explicit_attention", "vit_attention"]

# explicit form only while the score matrix has at most this many entries per unit of head width
_SCORES_PER_HEAD_DIM = 65536
# float32: explicit only for at most this many keys and at least this many queries
_FP32_MAX_KEYS = 32
_FP32_MIN_QUERIES = 256


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the matmuls on ``t`` run in: the CPU autocast dtype while one is on, else ``t.dtype``."""
    if t.device.type == "cpu" and t.is_floating_point() and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return t.dtype


def use_explicit_attention(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`scaled_dot_product_attention` takes the explicit form for these q (..., Lq, D), k (..., Lk, D).

    The rule and the measurements it comes from are in the module docstring.
    """
    if q.device.type != "cpu" or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    lq, d, lk = q.shape[-2], q.shape[-1], k.shape[-2]
    nb = max(q.dim(), k.dim()) - 2  # the broadcast batch dims (B, H): torch.broadcast_shapes is slower than this
    qb, kb = (1,) * (nb + 2 - q.dim()) + q.shape[:-2], (1,) * (nb + 2 - k.dim()) + k.shape[:-2]
    scores = lq * lk * math.prod(max(a, b) for a, b in zip(qb, kb))
    if scores > _SCORES_PER_HEAD_DIM * d:
        return False
    if _compute_dtype(q) == torch.bfloat16:
        return True
    return lk <= _FP32_MAX_KEYS and lq >= _FP32_MIN_QUERIES


def _mask_bias(blocked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool (True = not attended) -> additive mask of ``dtype``, -inf where True and 0 elsewhere."""
    return torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill_(blocked, float("-inf"))


def _explicit_attention(q, k, v, attn_mask, dropout_p):
    dtype = _compute_dtype(q)
    # k contiguous in (.., Lk, D) first: the product then reads k^T as a transposed operand; a strided k (a view of
    # a fused projection) would be copied into (.., D, Lk), a cache-unfriendly transpose
    s = (q * q.shape[-1] ** -0.5) @ k.contiguous().transpose(-2, -1)
    dead = None
    if attn_mask is not None:
        # the mask as an addend in the scores' dtype (a bool one -> 0 / -inf; autocast gives PyTorch's op a bf16
        # mask too): one add, and no masking op in the backward
        s = s + (_mask_bias(~attn_mask, s.dtype) if attn_mask.dtype == torch.bool else attn_mask.to(s.dtype))
        # rows with no key left (all -inf): softmax would give NaN; PyTorch's kernels give 0 and zero gradients
        dead = s.detach().amax(-1, keepdim=True) == float("-inf")
        if bool(dead.any()):
            s = s.masked_fill(dead, 0.0)
        else:
            dead = None
    p = torch.softmax(s, -1, dtype=torch.float32)
    if dead is not None:
        p = p.masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        p = F.dropout(p, dropout_p)
    return p.to(dtype) @ v


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(D) + mask) v``, as ``F.scaled_dot_product_attention`` (default scale, not causal).

    Args:
        q: (B, H, Lq, D) queries; k: (B, H, Lk, D) keys; v: (B, H, Lk, Dv) values (leading dims broadcast).
        attn_mask: None, bool (True = attend) or float (added to the scores), broadcastable to (B, H, Lq, Lk).
        dropout_p: dropout on the attention weights (pass 0 in eval mode, as for PyTorch's op).

    Returns:
        (B, H, Lq, Dv), in the compute dtype (autocast's under an autocast).

    The form is chosen by :func:`use_explicit_attention`; both compute the same function (module docstring).
    """
    if use_explicit_attention(q, k):
        return _explicit_attention(q, k, v, attn_mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H * D) -> (B, H, L, D) (a view; ``reshape``, which FLOP counters know as free, not ``unflatten``)."""
    B, L, _ = x.shape
    return x.reshape(B, L, num_heads, -1).transpose(1, 2)


def multi_head_attention(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mha(query, key, value, attn_mask=attn_mask, need_weights=False)[0]`` on batch-first tensors.

    Computed from the module's own parameters (``in_proj_weight`` / ``in_proj_bias`` rows [q; k; v],
    ``out_proj``), so its state-dict keys and checkpoints are untouched; the projections run on the contiguous
    batch-first tensors (one fused projection when ``query is key is value``, one for q and k when
    ``query is key``, one for k and v when ``key is value``) and the attention through
    :func:`scaled_dot_product_attention`. Attention dropout as the module (``mha.dropout`` in training mode).

    Args:
        mha: an ``nn.MultiheadAttention`` with a packed in-projection (kdim = vdim = embed_dim), no
            ``bias_k`` / ``bias_v``, no ``add_zero_attn``; other modules are called as they are.
        query: (B, Lq, E); key, value: (B, Lk, E) (batch first, whatever ``mha.batch_first`` says).
        attn_mask: ``nn.MultiheadAttention``'s convention: bool with True = *not* attended, or float added to
            the scores; (Lq, Lk) for every batch entry and head or (B * num_heads, Lq, Lk), batch-major.

    Returns:
        (B, Lq, E).
    """
    if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        if mha.batch_first:
            return mha(query, key, value, attn_mask=attn_mask, need_weights=False)[0]
        out = mha(query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), attn_mask=attn_mask,
                  need_weights=False)[0]
        return out.transpose(0, 1)
    E, H = mha.embed_dim, mha.num_heads
    if query.dim() != 3 or key.dim() != 3 or value.shape[:2] != key.shape[:2] or key.shape[0] != query.shape[0]:
        raise ValueError(f"multi_head_attention: expected batch-first query (B, Lq, {E}) and key / value "
                         f"(B, Lk, {E}), got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    B, Lq, Lk = query.shape[0], query.shape[1], key.shape[1]
    w, b = mha.in_proj_weight, mha.in_proj_bias

    def proj(x, rows: slice):
        return F.linear(x, w[rows], None if b is None else b[rows])

    if query is key and key is value:
        q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
    elif query is key:
        q, k = proj(query, slice(0, 2 * E)).chunk(2, dim=-1)
        v = proj(value, slice(2 * E, 3 * E))
    elif key is value:
        q = proj(query, slice(0, E))
        k, v = proj(key, slice(E, 3 * E)).chunk(2, dim=-1)
    else:
        q, k, v = proj(query, slice(0, E)), proj(key, slice(E, 2 * E)), proj(value, slice(2 * E, 3 * E))
    q, k, v = (_heads(t, H) for t in (q, k, v))
    if attn_mask is not None:
        if attn_mask.dim() == 3:
            if attn_mask.shape != (B * H, Lq, Lk):
                raise ValueError(f"multi_head_attention: attn_mask must be ({B * H}, {Lq}, {Lk}) or ({Lq}, {Lk}), "
                                 f"got {tuple(attn_mask.shape)}")
            attn_mask = attn_mask.view(B, H, Lq, Lk)
        elif attn_mask.shape != (Lq, Lk):
            raise ValueError(f"multi_head_attention: attn_mask must be ({B * H}, {Lq}, {Lk}) or ({Lq}, {Lk}), "
                             f"got {tuple(attn_mask.shape)}")
        if attn_mask.dtype == torch.bool:  # True = not attended -> -inf, as nn.MultiheadAttention converts it
            attn_mask = _mask_bias(attn_mask, _compute_dtype(q))
    out = scaled_dot_product_attention(q, k, v, attn_mask, mha.dropout if mha.training else 0.0)
    out = out.transpose(1, 2).reshape(B, Lq, E)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)


class MultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (same arguments, parameters and state-dict keys) whose batch-first
    ``need_weights=False`` calls run through :func:`multi_head_attention`; any other call is the parent's.

    Returns ``(output, None)`` for those calls, as the parent does. :meth:`convert` turns a module some library
    built (open_clip's CLIP tower) into this class in place.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if (self.batch_first and not need_weights and key_padding_mask is None and not is_causal
                and query.dim() == 3):
            return multi_head_attention(self, query, key, value, attn_mask), None
        return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                               attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)

    @classmethod
    def convert(cls, module: nn.MultiheadAttention) -> MultiheadAttention:
        """``module`` (an ``nn.MultiheadAttention``) as this class, in place: same object, parameters, RNG state."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"MultiheadAttention.convert: expected an nn.MultiheadAttention, got {type(module)}")
        module.__class__ = cls
        return module


def vit_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ViT ``Attention`` module (``timm.layers.Attention``) on (B, N, C) tokens, no mask -> (B, N, C).

    Its ``forward`` from its own sub-modules (qkv, q_norm / k_norm, norm, optional gate, proj, dropouts), with
    the attention through :func:`scaled_dot_product_attention` in place of its ``fused_attn`` switch.
    """
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = attn.norm(out.transpose(1, 2).reshape(B, N, attn.num_heads * attn.head_dim))
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out))


class ViTAttention(TimmAttention):
    """timm's ViT ``Attention`` (same arguments, parameters and state-dict keys) whose unmasked, non-causal calls
    run through :func:`vit_attention`; build a timm ``VisionTransformer`` with ``attn_layer=ViTAttention``."""

    def forward(self, x, attn_mask=None, is_causal=False):
        if attn_mask is None and not is_causal:
            return vit_attention(self, x)
        return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
