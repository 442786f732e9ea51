"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021) in PyTorch, with fused CPU kernels for the
forward and the backward.

Why our own: the reference implementations (Deformable-DETR / Mask2Former ``ops``, mmcv) need a
compiled CUDA op; Mask2Former's ``ms_deform_attn_func.py`` even fails at import without it. Here
the sampling is done with ``F.grid_sample`` per level (:func:`ms_deform_attn_core_pytorch`), which runs on CPU
and CUDA, supports float64 (gradcheck) and autograd, at the cost of speed and memory: it writes and re-reads a
(B*M, D, P, Lq) temporary per level, and its autograd backward (grid_sample's, the weighting's, the copies) more.
:func:`ms_deform_attn_core` uses instead, for float32 / bf16 values on the CPU, mfuser's fused C++ kernels
(``mfuser._C.ms_deform_attn_fwd_cpu`` / ``ms_deform_attn_bwd_cpu``, ``mfuser/layers/csrc/ms_deform_attn``): the
forward reads, per (batch, query, head), the 4 neighbours of every point and accumulates the weighted sum in
float32 registers; under autograd it runs inside a ``torch.autograd.Function`` whose backward re-reads the same
neighbours and writes the gradients of the value, the locations and the weights directly (no double backward).
Same results as the PyTorch path up to float32 rounding (tests/layers/test_ms_deform_attn_kernel.py). float64
and other devices take the PyTorch path.

Measured (forward + backward per call, fused vs the PyTorch path's autograd interleaved in one run, minimum of 11,
on this project's shared 2-core AVX-512 CPU, so the 2-thread figures are the noisier): quickstart shapes (B 4, 4
heads, D 16, levels 32/16/8 px, 1344 queries, 4 points) 9.1 vs 33.9 ms (3.7x) on 1 thread, 4.8 vs 21.5 ms (4.5x)
on 2, about the same with a bf16 value; full size (B 1, 8 heads, D 32, levels 72/36/18 px, 6804 queries, 4
points) 34 vs 399 ms (11.6x) on 1 thread, 16.7 vs 217 ms (13x) on 2, bf16 value 35 vs 413 ms (11.9x) on 1. One
bf16 quickstart training step (2 threads, tiny MFuser, 10 interleaved steps each): 233 -> 199 ms median.

Conventions (same as Deformable DETR):

* ``spatial_shapes[l] = (H_l, W_l)``; ``input_flatten`` holds the levels one after another, each
  flattened row-major (``level_start_index[l] = sum_{j<l} H_j * W_j``).
* Locations are normalised to [0, 1] with (x, y) order: pixel ``(i, j)`` of a level has its centre
  at ``((j + 0.5) / W_l, (i + 0.5) / H_l)``. Bilinear sampling, zero outside the map
  (``grid_sample(..., padding_mode="zeros", align_corners=False)``). A point whose 4 neighbours all lie outside
  contributes nothing, and the fused backward gives its location a zero gradient (grid_sample's differs only at a
  pixel coordinate of exactly -1, i.e. ``loc = -0.5 / W_l``, where it takes the one-sided derivative from inside).

Precision: the sampling and its weighted sum run in float32 on purpose, also under bf16 autocast (the
projections around them follow autocast). Two reasons, both measured or computed on the CPU this project
targets: ``grid_sample`` has no fast bf16 CPU kernel (one level of the full-size pixel decoder, 8 heads x 6804
queries x 4 points: 21-32 ms in float32, 73-94 ms in bf16), and bf16 locations would be off by up to half a
pixel (8 bits of mantissa: a step of 2^-8 near 1 of a [0, 1] coordinate is 0.25 px on a 64-pixel level, and
grid_sample doubles it on its [-1, 1] grid). The reference points, offsets and attention weights are combined
in float32. Only the value map may stay bf16: the fused kernels read it as stored and convert in registers
(the PyTorch path casts it to float32 first, about 0.1 ms per level); the sums are float32, the output and the
value's gradient are returned in the value's dtype, the gradients of the locations and weights in float32.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .amp import float32_region

__all__ = ["MSDeformAttn", "ms_deform_attn_core", "ms_deform_attn_core_pytorch", "deform_kernel_available"]

try:  # the optional compiled CPU kernel (same extension as the selective scan's)
    from mfuser import _C as _ext

    # both entry points (an extension built before the backward existed: the PyTorch path, until rebuilt)
    _HAS_KERNEL = hasattr(_ext, "ms_deform_attn_fwd_cpu") and hasattr(_ext, "ms_deform_attn_bwd_cpu")
except ImportError:  # not built: the PyTorch path only
    _ext = None
    _HAS_KERNEL = False

BACKENDS = ("auto", "kernel", "torch")


def deform_kernel_available() -> bool:
    """Whether mfuser's fused CPU sampling kernels (``mfuser._C.ms_deform_attn_fwd_cpu`` / ``_bwd_cpu``) are
    importable."""
    return _HAS_KERNEL


def _level_sizes(value_spatial_shapes) -> list[tuple[int, int]]:
    if isinstance(value_spatial_shapes, torch.Tensor):
        if value_spatial_shapes.dim() != 2 or value_spatial_shapes.shape[1] != 2:
            raise ValueError(
                f"spatial_shapes must have shape (n_levels, 2), got {tuple(value_spatial_shapes.shape)}"
            )
        return [(int(h), int(w)) for h, w in value_spatial_shapes.tolist()]
    return [(int(h), int(w)) for h, w in value_spatial_shapes]


def ms_deform_attn_core(value: torch.Tensor, value_spatial_shapes, sampling_locations: torch.Tensor,
                        attention_weights: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """:func:`ms_deform_attn_core_pytorch`, through the fused CPU kernels where they apply.

    Args: as :func:`ms_deform_attn_core_pytorch`, and
        backend: "auto" (the fused forward, and under autograd the fused backward, for CPU float32 / bf16 values
            when the extension is built, else PyTorch), "kernel" (ValueError where it does not apply) or "torch".
            A float64 value (gradcheck) or one on another device takes the PyTorch path.
    """
    if backend not in BACKENDS:
        raise ValueError(f"ms_deform_attn_core: backend must be one of {BACKENDS}, got {backend!r}")
    tensors = (value, sampling_locations, attention_weights)
    kernel_ok = (_HAS_KERNEL and all(t.device.type == "cpu" for t in tensors)
                 and value.dtype in (torch.float32, torch.bfloat16)
                 and all(t.dtype in (torch.float32, torch.bfloat16, torch.float16) for t in tensors[1:]))
    if backend == "kernel" and not kernel_ok:
        raise ValueError(f"ms_deform_attn_core: backend 'kernel' needs the built mfuser._C and CPU float32 / bf16 "
                         f"inputs (kernel built: {_HAS_KERNEL}, value {value.dtype} on {value.device}, locations "
                         f"{sampling_locations.dtype}, weights {attention_weights.dtype})")
    if backend == "torch" or not kernel_ok:
        return ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights)
    sizes = _check_core_inputs(value, value_spatial_shapes, sampling_locations, attention_weights)
    # the casts stay outside the autograd Function, so that autograd carries the gradients back through them
    value = value.contiguous()
    loc = sampling_locations.float().contiguous()
    attn = attention_weights.float().contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (value, loc, attn)):
        return _MSDeformAttnKernel.apply(value, sizes, loc, attn)
    return _kernel_forward(value, sizes, loc, attn)


def _kernel_sizes(value, sizes, loc):
    """The extension's size arguments and the (L, 2) shapes / (L,) starts int64 tensors it reads."""
    B, S, M, D = value.shape
    _, Lq, _, L, P, _ = loc.shape
    shapes = torch.tensor(sizes, dtype=torch.int64)
    starts = torch.tensor([sum(h * w for h, w in sizes[:i]) for i in range(L)], dtype=torch.int64)
    return shapes, starts, (B, S, M, D, Lq, L, P)


def _kernel_forward(value, sizes, loc, attn):
    """Fused forward. value: contiguous (B, S, M, D) float32 / bf16; loc, attn: contiguous float32.
    Returns (B, Lq, M * D) in value's dtype."""
    shapes, starts, dims = _kernel_sizes(value, sizes, loc)
    B, _, M, D, Lq, _, _ = dims
    out = torch.empty(B, Lq, M, D, dtype=torch.float32)
    _ext.ms_deform_attn_fwd_cpu(value.data_ptr(), shapes.data_ptr(), starts.data_ptr(), loc.data_ptr(),
                                attn.data_ptr(), out.data_ptr(), *dims, int(value.dtype == torch.bfloat16),
                                torch.get_num_threads())
    return out.view(B, Lq, M * D).to(value.dtype)


def _kernel_backward(value, sizes, loc, attn, grad_out):
    """Fused backward: (grad_value in value's dtype, grad_loc, grad_attn float32) for grad_out (B, Lq, M * D)."""
    shapes, starts, dims = _kernel_sizes(value, sizes, loc)
    grad_out = grad_out.float().contiguous()
    grad_value = torch.empty(value.shape, dtype=torch.float32)  # the kernel writes every element
    grad_loc = torch.empty(loc.shape, dtype=torch.float32)
    grad_attn = torch.empty(attn.shape, dtype=torch.float32)
    _ext.ms_deform_attn_bwd_cpu(value.data_ptr(), shapes.data_ptr(), starts.data_ptr(), loc.data_ptr(),
                                attn.data_ptr(), grad_out.data_ptr(), grad_value.data_ptr(), grad_loc.data_ptr(),
                                grad_attn.data_ptr(), *dims, int(value.dtype == torch.bfloat16),
                                torch.get_num_threads())
    return grad_value.to(value.dtype), grad_loc, grad_attn


class _MSDeformAttnKernel(torch.autograd.Function):
    """The fused CPU forward and backward as one autograd node (inputs as :func:`_kernel_forward`'s; the level
    sizes are a list of (H, W)). Saves only its inputs: the backward re-reads the 4 corners of every point."""

    @staticmethod
    def forward(ctx, value, sizes, loc, attn):
        ctx.sizes = sizes
        ctx.save_for_backward(value, loc, attn)
        return _kernel_forward(value, sizes, loc, attn)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        value, loc, attn = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = _kernel_backward(value, ctx.sizes, loc, attn, grad_out)
        need = ctx.needs_input_grad
        return tuple(g if n else None for g, n in zip((grad_value, None, grad_loc, grad_attn), need))


def ms_deform_attn_core_pytorch(
    value: torch.Tensor,
    value_spatial_shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The sampling + weighted sum at the heart of multi-scale deformable attention (PyTorch, with autograd).

    Args:
        value: (B, S, M, D) with S = sum_l H_l * W_l, M heads, D channels per head.
        value_spatial_shapes: (L, 2) long tensor (or list of pairs) of (H_l, W_l).
        sampling_locations: (B, Lq, M, L, P, 2), (x, y) in [0, 1] (outside is allowed: zeros).
        attention_weights: (B, Lq, M, L, P), normally softmax-normalised over (L, P).

    Returns:
        (B, Lq, M * D) in ``value.dtype``; computed in float32 (see the module docstring).
    """
    _check_core_inputs(value, value_spatial_shapes, sampling_locations, attention_weights)
    out_dtype = value.dtype
    with float32_region(value.device.type):
        out = _sample_and_sum(_float(value), _level_sizes(value_spatial_shapes), _float(sampling_locations),
                              _float(attention_weights))
    return out.to(out_dtype)


def _check_core_inputs(value, value_spatial_shapes, sampling_locations, attention_weights) -> list[tuple[int, int]]:
    """Check the shapes of the core's inputs; returns the level sizes."""
    sizes = _level_sizes(value_spatial_shapes)
    B, S, M, D = value.shape
    _, Lq, M2, L, P, two = sampling_locations.shape
    if two != 2 or M2 != M or L != len(sizes):
        raise ValueError(
            f"sampling_locations must be (B, Lq, {M}, {len(sizes)}, P, 2), got {tuple(sampling_locations.shape)}"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights must be {tuple(sampling_locations.shape[:-1])}, got {tuple(attention_weights.shape)}"
        )
    if sum(h * w for h, w in sizes) != S:
        raise ValueError(f"value has {S} tokens but spatial_shapes {sizes} sum to {sum(h * w for h, w in sizes)}")
    return sizes


def _float(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _softmax_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax over consecutive groups of ``n`` elements: ``x.view(-1, n).softmax(-1)``, as a (R, n) view.

    Why not that call: PyTorch's CPU softmax over a contiguous last dimension handles each row of n (12 or 16
    here, L * P) as one short vector, which costs several times the softmax over the first dimension of the
    transposed (n, R) view (the kernel copies it to an (n, R) layout and vectorises across the R rows).
    Quickstart sizes, 4 x 1344 x 4 rows of 12, forward + backward, 2 threads: 2.9 ms -> 0.7 ms. The values are
    the same function with another summation order (float32: within 3e-8 of ``softmax(-1)`` on logits of
    standard deviation 3). On a CPU the result has the (R, n) shape with transposed strides; its consumers read it
    through strides or a reshape. Other devices keep ``softmax(-1)`` (the workaround is for the CPU kernel).
    """
    rows = x.reshape(-1, n)
    return rows.t().softmax(0).t() if rows.device.type == "cpu" else rows.softmax(-1)


def _sample_and_sum(value, sizes, sampling_locations, attention_weights):
    """:func:`ms_deform_attn_core_pytorch` without the checks and casts (float32 or float64 inputs)."""
    B, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    # (B, Lq, M, L, P) -> (B*M, L, 1, P, Lq)
    attn = attention_weights.permute(0, 2, 3, 4, 1).reshape(B * M, L, 1, P, Lq)
    # Why this layout: the weighted sum is accumulated level by level (stacking the L sampled maps first costs a
    # concatenation and a (B*M, D, Lq, L*P) temporary), and the points are sampled as a (P, Lq) grid so that the
    # sum over P runs along a non-innermost axis (a sum over an innermost axis of size P = 4 is slow on CPU).
    # Measured at 512 x 512 (3 levels, 6804 queries, one thread): 0.21 s -> 0.12 s per call for the first,
    # 30-50 ms more for the second (0.24 s -> 0.11 s per call for both).
    out = None
    for lvl, (h, w) in enumerate(sizes):
        # (B, h*w, M, D) -> (B*M, D, h, w)
        value_l = value_list[lvl].flatten(2).transpose(1, 2).reshape(B * M, D, h, w)
        # (B, Lq, M, P, 2) -> (B*M, P, Lq, 2)
        grid_l = grids[:, :, :, lvl].permute(0, 2, 3, 1, 4).flatten(0, 1)
        # (B*M, D, P, Lq)
        sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        level_out = (sampled * attn[:, lvl]).sum(2)  # (B*M, D, Lq)
        out = level_out if out is None else out + level_out
    return out.view(B, M * D, Lq).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR semantics and initialisation).

    Each query attends to ``n_points`` sampled locations per head and level around its reference
    point; offsets and attention weights are linear functions of the query.

    Args:
        d_model: channels C (divisible by n_heads).
        n_levels: number of feature levels L.
        n_heads: number of heads M.
        n_points: sampling points P per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        d_head = d_model // n_heads
        if d_head & (d_head - 1) != 0:
            warnings.warn(f"MSDeformAttn: d_model/n_heads = {d_head} is not a power of 2 (slower on CUDA kernels).",
                          stacklevel=2)
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: offsets start on a ring of directions (one per head), scaled by point
        index; uniform attention; xavier projections."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (B, Lq, C), usually content + position embedding.
            reference_points: (B, Lq, n_levels, 2), (x, y) in [0, 1] per level.
            input_flatten: (B, S, C), S = sum_l H_l * W_l, levels concatenated (no position added).
            input_spatial_shapes: (n_levels, 2) long, (H_l, W_l).
            input_level_start_index: (n_levels,) long, start of each level in S.
            input_padding_mask: optional (B, S) bool, True at padded positions (their values are zeroed).

        Returns:
            (B, Lq, C).
        """
        B, Lq, C = query.shape
        if C != self.d_model:
            raise ValueError(f"query has {C} channels, expected d_model={self.d_model}")
        if input_flatten.dim() != 3 or input_flatten.shape[0] != B or input_flatten.shape[2] != C:
            raise ValueError(f"input_flatten must be ({B}, S, {C}), got {tuple(input_flatten.shape)}")
        if reference_points.shape != (B, Lq, self.n_levels, 2):
            raise ValueError(
                f"reference_points must be ({B}, {Lq}, {self.n_levels}, 2), got {tuple(reference_points.shape)}"
            )
        sizes = _level_sizes(input_spatial_shapes)
        if len(sizes) != self.n_levels:
            raise ValueError(f"input_spatial_shapes has {len(sizes)} levels, expected n_levels={self.n_levels}")
        starts = [0]
        for h, w in sizes[:-1]:
            starts.append(starts[-1] + h * w)
        if [int(s) for s in input_level_start_index.tolist()] != starts:
            raise ValueError(
                f"input_level_start_index {input_level_start_index.tolist()} does not match spatial shapes {sizes}"
            )
        S = input_flatten.shape[1]

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(B, S, self.n_heads, self.d_model // self.n_heads)

        M, L, P = self.n_heads, self.n_levels, self.n_points
        # Under autocast the projections give bf16; the locations (a reference point in [0, 1] plus an offset of a
        # few pixels) and the softmax over the L * P weights are formed in float32 (see the module docstring).
        offsets = _float(self.sampling_offsets(query))  # (B, Lq, M * L * P * 2)
        attn = _softmax_rows(_float(self.attention_weights(query)), L * P).view(B, Lq, M, L, P)
        # offsets are in pixels of each level: normalise by (W_l, H_l), as one (M * L * P * 2,) divisor along the
        # contiguous channels: the same quotients as dividing the (B, Lq, M, L, P, 2) view by an (L, 2) table, whose
        # broadcast over an innermost axis of 2 is slow on a CPU (quickstart sizes, forward + backward, 2 threads:
        # 2.1 ms -> 0.19 ms)
        normalizer = torch.tensor([[w, h] for h, w in sizes], dtype=offsets.dtype, device=query.device)
        offsets = (offsets / normalizer[None, :, None, :].expand(M, L, P, 2).reshape(-1)).view(B, Lq, M, L, P, 2)
        # reference (B, Lq, L, 2) + offsets (B, Lq, M, L, P, 2): the reference repeated over the P points first, so
        # that the broadcast over the M heads adds contiguous runs of L * P * 2 (the same sums; quickstart sizes,
        # forward + backward: 1.35 -> 0.40 ms)
        ref = _float(reference_points)[:, :, None, :, None, :].expand(B, Lq, 1, L, P, 2).reshape(B, Lq, 1, L * P * 2)
        locations = (offsets.view(B, Lq, M, L * P * 2) + ref).view(B, Lq, M, L, P, 2)
        out = ms_deform_attn_core(value, sizes, locations, attn)
        return self.output_proj(out)
