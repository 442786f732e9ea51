"""MVFuser: the Mamba co-adapter that fuses the VFM and VLM token streams (docs/reference.md, "Fusion", "MVFuser")."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfuser.layers.selective_scan import selective_scan

__all__ = ["MVFuser", "GatedRMSNorm"]


class GatedRMSNorm(nn.Module):
    """``RMSNorm(y) * weight * silu(z)`` over the last dimension (norm before gate, no groups).

    The gated RMSNorm of mamba_ssm (``RMSNormGated(norm_before_gate=True)``); written here with
    ``F.rms_norm`` because mamba_ssm's version is a Triton kernel (CUDA only). Computed in float32.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        out = F.rms_norm(y.float(), (y.shape[-1],), self.weight.float(), self.eps)
        return (out * F.silu(z.float())).to(dtype)


def _channels_first_linear(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``F.linear(x.transpose(1, 2), weight).transpose(1, 2)`` as a contiguous (B, out, L) tensor.

    Why not ``nn.Linear`` + transpose: the scan and the depthwise convs want channels-first contiguous
    inputs, and copying a transposed (B, L, d) output costs as much as a third of the matmul on CPU (the
    three (B, 512, L) copies of the first version); mamba_ssm's ``Mamba.forward`` computes ``weight @ x`` for
    the same reason. ``bmm`` (not a broadcast ``matmul``) so that fvcore counts B * out * in * L FLOPs.

    Args:
        weight: (out, in) weight of an ``nn.Linear`` (no bias).
        x: (B, in, L), any strides.
    """
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)


class MVFuser(nn.Module):
    """Mamba mixer applied to the joint token sequence; returns the (small) update to add residually.

    ``forward(x (B, L, d_model)) -> (B, L, d_model)`` computes, with ``d = d_inner / 2 = expand * d_model / 2``:

    1. ``in_proj`` (Linear d_model -> d_inner, no bias), split channels into x (first d) and z (last d);
    2. x and z each through a depthwise, non-causal Conv1d (kernel ``d_conv``, 'same' padding, no bias), SiLU;
    3. SSM on x: ``x_proj`` (d -> dt_rank + 2 d_state, no bias) gives dt, B, C; ``dt_proj`` (dt_rank -> d);
       ``A = -exp(A_log)`` (S4D-real init: A_log = log(1..d_state)), D (init 1); selective scan with
       ``delta_softplus=True`` and ``delta_bias = dt_proj.bias``, no z in the scan;
    4. gated RMSNorm (eps 1e-5, norm before gate): ``RMSNorm(y) * silu(z)``;
    5. ``out_proj`` (Linear d -> d_model, no bias), Dropout, times a learnable scalar ``scale`` (init
       ``init_scale`` = 1e-3, so the adapter starts close to identity).

    Parameter count (bidirectional=False): 1,667,585 at d_model=1024 and 109,697 at d_model=256 (d_state 16,
    d_conv 3, expand 1), as in the reference. Attribute names follow the reference code, so official
    checkpoints map by prefix.

    Reference quirks kept for parity (both affect released checkpoints):

    * the conv branches have no bias (the reference asks for ``conv_bias // 2`` = 0);
    * ``double_dt_bias=True``: the reference computes ``dt = dt_proj(dt)`` *with* its bias and passes
      ``dt_proj.bias`` again as ``delta_bias``, so the bias is added twice before the softplus. With
      ``double_dt_bias=False`` it is added once (Mamba's intent: ``softplus(W dt + bias)``).

    ``bidirectional=True`` (an improvement, not in the reference): the one-way scan over [VFM tokens ; VLM
    tokens] carries information almost only from the VFM half to the VLM half. With this option a second
    scan runs over the reversed sequence with its own selection parameters (``x_proj_b``, ``dt_proj_b``,
    ``A_log_b``, ``D_b``; Vision-Mamba style, because the two directions see different contexts and should
    select differently), sharing in_proj, the convolutions (already symmetric), the norm and out_proj.
    The two outputs are merged by their mean, before the gated RMSNorm: the norm makes the merge
    scale-free, and the mean keeps the D-skip term at the one-way magnitude, so the block at init behaves
    like the one-way block with a symmetric receptive field. Both scans run as one kernel call (the
    directions are stacked along the channel axis, with B/C as two groups). Extra parameters:
    ``d * (dt_rank + 2 d_state) + dt_rank * d + d + d * d_state + d`` = 91,136 at d_model=1024
    (total 1,758,721) and 10,496 at d_model=256 (total 120,193).

    Args:
        d_model: token width.
        d_state: SSM state size N.
        d_conv: depthwise conv kernel size.
        expand: d_inner = expand * d_model (must be even).
        dt_rank: rank of the dt projection, ``"auto"`` = ceil(d_model / 16).
        dt_min, dt_max, dt_init_floor: dt_proj.bias = softplus^-1(dt), dt ~ logU[dt_min, dt_max] floored.
        dropout: dropout on the output projection.
        init_scale: initial value of the output scale.
        bidirectional: add the reversed-sequence scan (see above).
        double_dt_bias: add dt_proj.bias twice, as the reference does (see above).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 1,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        dropout: float = 0.1,
        init_scale: float = 1e-3,
        bidirectional: bool = False,
        double_dt_bias: bool = True,
    ):
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MVFuser: {name} must be a positive int, got {value!r}")
        d_inner = expand * d_model
        if d_inner % 2:
            raise ValueError(f"MVFuser: expand * d_model must be even (split into x and z), got {d_inner}")
        if not (0 < dt_min <= dt_max):
            raise ValueError(f"MVFuser: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = d_inner
        d = d_inner // 2
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"MVFuser: dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        self.dt_rank = dt_rank
        self.bidirectional = bidirectional
        self.double_dt_bias = double_dt_bias

        self.in_proj = nn.Linear(d_model, d_inner, bias=False)
        self.conv1d_x = nn.Conv1d(d, d, kernel_size=d_conv, groups=d, padding="same", bias=False)
        self.conv1d_z = nn.Conv1d(d, d, kernel_size=d_conv, groups=d, padding="same", bias=False)
        self.x_proj, self.dt_proj, self.A_log, self.D = self._make_ssm(d, dt_min, dt_max, dt_init_floor)
        if bidirectional:
            self.x_proj_b, self.dt_proj_b, self.A_log_b, self.D_b = self._make_ssm(d, dt_min, dt_max, dt_init_floor)
        self.norm = GatedRMSNorm(d, eps=1e-5)
        self.out_proj = nn.Linear(d, d_model, bias=False)
        self.proj_drop = nn.Dropout(dropout)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def _make_ssm(self, d, dt_min, dt_max, dt_init_floor):
        x_proj = nn.Linear(d, self.dt_rank + 2 * self.d_state, bias=False)
        dt_proj = nn.Linear(self.dt_rank, d, bias=True)
        std = self.dt_rank**-0.5
        nn.init.uniform_(dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        dt_proj.bias._no_reinit = True
        A_log = nn.Parameter(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(d, 1))
        D = nn.Parameter(torch.ones(d))
        return x_proj, dt_proj, A_log, D

    def _ssm_inputs(self, x, x_proj, dt_proj, A_log):
        """x: (B, d, L) -> (delta (B, d, L), A (d, N), B (B, N, L), C (B, N, L), delta_bias (d,)).

        Computed channels-first (``weight @ x``) so that delta comes out contiguous for the scan.
        """
        x_dbl = _channels_first_linear(x_proj.weight, x)  # (B, dt_rank + 2N, L)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = _channels_first_linear(dt_proj.weight, dt)  # (B, d, L)
        if self.double_dt_bias:
            delta = delta + dt_proj.bias.to(delta.dtype)[:, None]
        A = -torch.exp(A_log.float())
        return delta, A, Bm, Cm, dt_proj.bias.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d_model) -> the update (B, L, d_model), i.e. scale * dropout(out_proj(...))."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MVFuser: x must be (batch, L, d_model={self.d_model}), got {tuple(x.shape)}")
        if x.shape[1] < 1:
            raise ValueError("MVFuser: x must have at least one token")
        # in_proj as two channels-first matmuls (rows [:d] -> x, [d:] -> z): each (B, d, L) and contiguous,
        # also for B > 1, where chunking one (B, d_inner, L) tensor would give non-contiguous halves
        w_x, w_z = self.in_proj.weight.chunk(2, dim=0)
        xt = x.transpose(1, 2)
        xs, z = _channels_first_linear(w_x, xt), _channels_first_linear(w_z, xt)
        xs = F.silu(self.conv1d_x(xs))
        z = F.silu(self.conv1d_z(z))
        delta, A, Bm, Cm, bias = self._ssm_inputs(xs, self.x_proj, self.dt_proj, self.A_log)
        if not self.bidirectional:
            y = selective_scan(xs, delta, A, Bm, Cm, self.D.float(), z=None, delta_bias=bias, delta_softplus=True)
        else:
            xr = xs.flip(-1)
            delta_b, A_b, B_b, C_b, bias_b = self._ssm_inputs(xr, self.x_proj_b, self.dt_proj_b, self.A_log_b)
            d = xs.shape[1]
            y2 = selective_scan(
                torch.cat([xs, xr], 1), torch.cat([delta, delta_b], 1), torch.cat([A, A_b], 0),
                torch.stack([Bm, B_b], 1), torch.stack([Cm, C_b], 1), torch.cat([self.D, self.D_b]).float(),
                z=None, delta_bias=torch.cat([bias, bias_b]), delta_softplus=True)
            y = 0.5 * (y2[:, :d] + y2[:, d:].flip(-1))
        y = self.norm(y.transpose(1, 2), z.transpose(1, 2))
        return self.proj_drop(self.out_proj(y)) * self.scale
