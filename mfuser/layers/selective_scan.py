"""Selective scan (the Mamba-1 recurrence) with the contract of mamba_ssm's ``selective_scan_fn``.

For every batch ``b``, channel ``d`` (of ``dim``) and state ``n`` (of ``N``)::

    dt[b, d, l] = softplus(delta[b, d, l] + delta_bias[d])         (bias / softplus optional)
    h[l, n]     = exp(dt[l] * A[d, n]) * h[l-1, n] + dt[l] * B[b, g(d), n, l] * u[b, d, l],  h[-1] = 0
    y[b, d, l]  = sum_n C[b, g(d), n, l] * h[l, n] + D[d] * u[b, d, l]
    out         = y * silu(z)                                        (gating optional)

with ``g(d) = d // (dim // groups)`` when B / C are grouped ``(batch, groups, N, L)``.

Backends (:func:`select_backend` names the one used for a device):

* ``"mamba"``: mamba_ssm's CUDA kernel, when ``mamba_ssm`` is importable and the inputs are CUDA tensors.
* ``"kernel"``: mfuser's fused C++ CPU kernel (``mfuser._C``, built from ``mfuser/layers/csrc`` by
  ``pip install --no-build-isolation -e .``), on CPU, N <= 64; float32, or bfloat16 inputs (see below). It keeps
  the state in vector
  registers (one pass over L per (batch, channel)), with delta_bias, softplus and D fused, threads over
  batch x dim with OpenMP (``torch.get_num_threads()`` threads), and recomputes the states in the backward
  instead of storing ``(batch, dim, L, N)``. Besides its outputs (du, ddelta: (batch, dim, L); dA, dB, dC,
  dD, dbias), the backward needs ``2 * T * batch * groups * L * N_pad`` floats for per-task dB/dC
  accumulators plus ``T * (2 * L * N_pad + 2 * L)`` floats of scratch (T = 1 task on one thread, 4 tasks
  per thread otherwise; N_pad = N rounded up to a multiple of 8): about 1.7 MB at MFuser's shape on one
  thread. Measured growth of the peak resident memory over a whole forward + backward at that shape
  (batch 2, dim 512, L 2594, N 16, one thread): about 54 MB, mostly (batch, dim, L) outputs and gradients;
  the sequential reference materialises several (batch, dim, L, N) tensors (340 MB each) plus its graph.
* ``"torch"``: pure PyTorch, any device, float32/float64: a chunked scan (Hillis-Steele inside chunks of
  64 steps, then across chunk summaries; only ``log2`` many Python iterations, no loop over L), with a
  hand-written backward that recomputes the states (run as a reverse scan). It only ever multiplies
  decays ``exp(dt * A) <= 1`` together, never exponentiates positive cumulative sums, so large decays
  underflow to 0 exactly as in the sequential recurrence. Processed in channel blocks of at most
  ``_TORCH_BLOCK_ELEMS`` elements of (batch, channels, L, N) to bound memory.

:func:`selective_scan_ref` is the plain sequential algorithm (one Python step per position), kept for tests
and the benchmark.

Computation dtype: float32, or float64 when ``u`` is float64 (then the ``"torch"`` backend runs on CPU);
the output is cast back to ``u.dtype`` and the last state is returned in the computation dtype, as in
mamba_ssm. NaN / inf inputs propagate like in the sequential recurrence (nothing is clamped).

bfloat16 (CPU autocast, see ``mfuser.engine.precision``): when ``u``, ``delta``, ``B`` and ``C`` are all bfloat16,
the C++ kernel reads them as bfloat16 and writes the output as bfloat16, while ``dt``, the state, the decays and
every sum stay float32 (as in mamba_ssm's CUDA kernel, "bf16 in, fp32 state"); A, D and delta_bias are used in
float32. That saves converting the (batch, dim, L) inputs to float32 and the output back. The backward runs the
float32 kernel on float32 copies of the saved bfloat16 inputs (the saved tensors stay bfloat16, half the memory)
and returns gradients in the inputs' dtypes. Mixed input dtypes, and the other backends, compute in float32.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = ["selective_scan", "selective_scan_ref", "select_backend", "kernel_available", "bf16_kernel_available",
           "BACKENDS"]

BACKENDS = ("auto", "mamba", "kernel", "torch")

try:  # the optional compiled CPU kernel
    from mfuser import _C as _ext

    _HAS_KERNEL = hasattr(_ext, "selective_scan_fwd_cpu")
except ImportError:  # not built (no compiler at install time): pure-PyTorch fallback
    _ext = None
    _HAS_KERNEL = False
# an extension built before the bf16 forward existed has no such entry: bf16 inputs then go through float32
_HAS_BF16_KERNEL = _HAS_KERNEL and hasattr(_ext, "selective_scan_fwd_cpu_bf16")

_KERNEL_MAX_STATE = 64
# Vector code path of the C++ kernel: None = best for this CPU; 0 portable, 1 AVX2+FMA, 2 AVX-512 (clipped to what
# the CPU supports). Tests lower it to exercise every path.
_KERNEL_LEVEL = None
_TORCH_CHUNK = 64
_TORCH_BLOCK_ELEMS = 1 << 23  # elements of (batch, channel block, L, N) processed at once by the "torch" backend


def kernel_available() -> bool:
    """Whether mfuser's compiled C++ CPU kernel (``mfuser._C``) is importable."""
    return _HAS_KERNEL


def bf16_kernel_available() -> bool:
    """Whether the compiled kernel has its bfloat16 forward (bf16 in / out, float32 state)."""
    return _HAS_BF16_KERNEL


@functools.lru_cache(maxsize=1)
def _mamba_fn():
    """mamba_ssm's selective_scan_fn, or None (looked up once: a failing import is slow to repeat)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # noqa: BLE001 - any import failure (missing package, CUDA/ABI mismatch) means "not usable"
        return None
    return selective_scan_fn


def select_backend(device: str | torch.device) -> str:
    """Human-readable name of the backend :func:`selective_scan` uses for float32 inputs on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        if _mamba_fn() is not None:
            return "mamba_ssm CUDA kernel"
        return "PyTorch chunked scan (mamba_ssm not importable)"
    if device.type == "cpu" and _HAS_KERNEL:
        level = {2: "AVX-512", 1: "AVX2+FMA"}.get(_ext.selective_scan_cpu_level(), "portable")
        bf16 = ", bf16 forward" if _HAS_BF16_KERNEL else ""
        return f"mfuser C++ CPU kernel ({level}{bf16}, N <= {_KERNEL_MAX_STATE})"
    if device.type == "cpu":
        return "PyTorch chunked scan (mfuser._C not built)"
    return "PyTorch chunked scan"


# ----------------------------------------------------------------------------------------------- validation
def _shape(t) -> str:
    return str(tuple(t.shape))


def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in (("D", D), ("z", z), ("delta_bias", delta_bias)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise ValueError(f"selective_scan: {name} must be a torch.Tensor or None, got {type(t).__name__}")
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {_shape(u)}")
    batch, dim, L = u.shape
    if L < 1 or dim < 1:
        raise ValueError(f"selective_scan: u must be (batch, dim, L) with dim >= 1 and L >= 1, got {_shape(u)}")
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must be (batch, dim, L) = {tuple(u.shape)}, got {_shape(delta)}")
    if A.is_complex():
        raise ValueError("selective_scan: A must be real (complex A is not supported)")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim, N) = ({dim}, N), got {_shape(A)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        ok = (t.dim() == 3 and tuple(t.shape) == (batch, N, L)) or (
            t.dim() == 4 and t.shape[0] == batch and t.shape[2:] == (N, L) and t.shape[1] >= 1 and dim % t.shape[1] == 0
        )
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be (batch, N, L) = ({batch}, {N}, {L}) or (batch, groups, N, L) = "
                f"({batch}, groups, {N}, {L}) with groups dividing dim={dim}, got {_shape(t)}"
            )
        if t.is_complex():
            raise ValueError(f"selective_scan: {name} must be real, got dtype {t.dtype}")
    if D is not None and tuple(D.shape) != (dim,):
        raise ValueError(f"selective_scan: D must be (dim,) = ({dim},), got {_shape(D)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must be (batch, dim, L) = {tuple(u.shape)}, got {_shape(z)}")
    if delta_bias is not None and tuple(delta_bias.shape) != (dim,):
        raise ValueError(f"selective_scan: delta_bias must be (dim,) = ({dim},), got {_shape(delta_bias)}")
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias)):
        if t is None:
            continue
        if not t.is_floating_point():
            raise ValueError(f"selective_scan: {name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {t.device} but u is on {u.device}")


def _compute_dtype(u):
    return torch.float64 if u.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------------- reference
def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Plain sequential selective scan (one step per position, autograd through every step).

    Same arguments, layout and result as :func:`selective_scan`. Computes in float32 (float64 when ``u`` is
    float64). Precomputes the decays and inputs as (batch, dim, L, N) tensors, so it needs about
    ``2 * batch * dim * L * N`` floats plus the autograd graph: only for tests and benchmarks. (Steps are taken
    from ``unbind`` views, so its autograd backward is linear in L; indexing ``decay[:, :, i]`` in the loop, as
    mamba_ssm's reference does, makes the backward quadratic in L.)
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in, cdt = u.dtype, _compute_dtype(u)
    batch, dim, L = u.shape
    u_, dt = u.to(cdt), delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bf, Cf = _per_channel(B.to(cdt), dim), _per_channel(C.to(cdt), dim)  # (batch, dim, N, L)
    decay = torch.exp(dt[..., None] * A.to(cdt)[:, None, :])  # (batch, dim, L, N)
    inp = (dt * u_)[..., None] * Bf.transpose(-1, -2)  # (batch, dim, L, N)
    h = u_.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind (not indexing inside the loop): its backward is one stack, so autograd stays linear in L
    for dA_i, x_i, C_i in zip(decay.unbind(2), inp.unbind(2), Cf.unbind(-1)):
        h = dA_i * h + x_i
        ys.append((h * C_i).sum(-1))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + u_ * D.to(cdt)[:, None]
    if z is not None:
        out = out * F.silu(z.to(cdt))
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def _per_channel(BC, dim):
    """(batch, N, L) or (batch, G, N, L) -> (batch, dim, N, L) (a broadcast view / repeat)."""
    if BC.dim() == 3:
        return BC[:, None].expand(-1, dim, -1, -1)
    return BC.repeat_interleave(dim // BC.shape[1], dim=1)


# ----------------------------------------------------------------------------------------- C++ kernel
def _kernel_level():
    return -1 if _KERNEL_LEVEL is None else int(_KERNEL_LEVEL)


class _KernelScanFn(torch.autograd.Function):
    """Fused C++ scan on CPU, contiguous inputs.

    (u, delta (batch, dim, L), A (dim, NP), Bt, Ct (batch, G, L, NP), D (dim,) | None, delta_bias (dim,) | None,
    softplus) -> (y = scan + D * u (batch, dim, L), last_state (batch, dim, NP) float32).
    u, delta, Bt, Ct and y: all float32 or all bfloat16; A, D, delta_bias: float32.
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, bias, softplus):
        batch, dim, L = u.shape
        G, NP = Bt.shape[1], A.shape[1]
        y = torch.empty_like(u)
        last = u.new_empty(batch, dim, NP, dtype=torch.float32)
        fwd = _ext.selective_scan_fwd_cpu_bf16 if u.dtype == torch.bfloat16 else _ext.selective_scan_fwd_cpu
        fwd(
            u.data_ptr(), delta.data_ptr(), A.data_ptr(), Bt.data_ptr(), Ct.data_ptr(), _ptr(D), _ptr(bias),
            int(softplus), y.data_ptr(), last.data_ptr(), batch, dim, L, G, NP, torch.get_num_threads(),
            _kernel_level())
        ctx.save_for_backward(u, delta, A, Bt, Ct, D, bias)
        ctx.softplus = bool(softplus)
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, Bt, Ct, D, bias = ctx.saved_tensors
        in_dtype = u.dtype  # bf16 inputs: the float32 backward on float32 copies, gradients cast back
        u, delta, Bt, Ct = u.float(), delta.float(), Bt.float(), Ct.float()
        batch, dim, L = u.shape
        G, NP = Bt.shape[1], A.shape[1]
        dy = torch.zeros_like(u) if dy is None else dy.contiguous().float()
        dlast = None if dlast is None else dlast.contiguous().float()
        nthreads = torch.get_num_threads()
        # a fixed partition into tasks (4 per thread when there are several threads, for load balance on a
        # shared machine); task t accumulates its own dB/dC, so the result depends only on the thread count
        ntask = max(1, min(nthreads if nthreads == 1 else 4 * nthreads, batch * dim))
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dA = u.new_empty(batch, dim, NP)
        dB = u.new_zeros(ntask, batch, G, L, NP)
        dC = u.new_zeros(ntask, batch, G, L, NP)
        dD = None if D is None else u.new_empty(batch, dim)
        dbias = None if bias is None else u.new_empty(batch, dim)
        scratch = u.new_empty(ntask, 2 * L * NP + 2 * L)
        _ext.selective_scan_bwd_cpu(
            u.data_ptr(), delta.data_ptr(), A.data_ptr(), Bt.data_ptr(), Ct.data_ptr(), _ptr(D), _ptr(bias),
            int(ctx.softplus), dy.data_ptr(), _ptr(dlast), du.data_ptr(), ddelta.data_ptr(), dA.data_ptr(),
            dB.data_ptr(), dC.data_ptr(), _ptr(dD), _ptr(dbias), scratch.data_ptr(), batch, dim, L, G, NP, ntask,
            nthreads, _kernel_level())
        return (du.to(in_dtype), ddelta.to(in_dtype), dA.sum(0), dB.sum(0).to(in_dtype), dC.sum(0).to(in_dtype),
                None if dD is None else dD.sum(0), None if dbias is None else dbias.sum(0), None)


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def _scan_kernel(u, delta, A, B4, C4, D, delta_bias, delta_softplus):
    """Pads the state to a multiple of 8, puts it last, and runs the C++ kernel. Returns (scan + D u, last).

    u, delta, B4, C4: all float32 or all bfloat16 (the output has their dtype); the rest is used in float32."""
    N = A.shape[1]
    NP = -(-N // 8) * 8
    pad = NP - N
    Bt = B4.transpose(-1, -2)
    Ct = C4.transpose(-1, -2)
    A_ = A
    if pad:  # zero-padded states stay exactly 0 and receive no gradient
        Bt, Ct, A_ = F.pad(Bt, (0, pad)), F.pad(Ct, (0, pad)), F.pad(A, (0, pad))

    def c(t):
        return None if t is None else t.float().contiguous()

    y, last = _KernelScanFn.apply(u.contiguous(), delta.contiguous(), c(A_), Bt.contiguous(), Ct.contiguous(), c(D),
                                  c(delta_bias), bool(delta_softplus))
    return y, last[..., :N]


# ---------------------------------------------------------------------------------------- PyTorch chunked
def _hs_scan(a, x, dim):
    """Inclusive scan of h_i = a_i * h_{i-1} + x_i along ``dim`` (Hillis-Steele, log2(n) vectorised steps).

    Returns (prod of a up to i, h_i). Only products of the given factors are formed (no division, no exp)."""
    n = a.shape[dim]
    s = 1
    while s < n:
        a_hi, a_lo = a.narrow(dim, s, n - s), a.narrow(dim, 0, n - s)
        x = torch.cat([x.narrow(dim, 0, s), torch.addcmul(x.narrow(dim, s, n - s), a_hi, x.narrow(dim, 0, n - s))], dim)
        a = torch.cat([a.narrow(dim, 0, s), a_hi * a_lo], dim)
        s *= 2
    return a, x


def _linear_scan(a, x):
    """h_l = a_l * h_{l-1} + x_l along dim 2 of (batch, dim, L, N) tensors, h_{-1} = 0. Chunked two-level scan."""
    b, d, L, N = a.shape
    K = min(_TORCH_CHUNK, L)
    nc = -(-L // K)
    if nc * K != L:  # pad the tail with identity steps (a = 1, x = 0); earlier outputs are unaffected
        a = torch.cat([a, a.new_ones(b, d, nc * K - L, N)], 2)
        x = torch.cat([x, x.new_zeros(b, d, nc * K - L, N)], 2)
    a = a.reshape(b, d, nc, K, N)
    x = x.reshape(b, d, nc, K, N)
    pa, hx = _hs_scan(a, x, 3)  # within chunks, from a zero state
    if nc > 1:
        _, hend = _hs_scan(pa[:, :, :, -1], hx[:, :, :, -1], 2)  # state at the end of every chunk
        carry = torch.cat([hend.new_zeros(b, d, 1, N), hend[:, :, :-1]], 2)  # state entering every chunk
        hx = torch.addcmul(hx, pa, carry[:, :, :, None])
    return hx.reshape(b, d, nc * K, N)[:, :, :L]


def _channel_blocks(batch, dim, L, N):
    per = max(1, _TORCH_BLOCK_ELEMS // max(1, batch * L * N))
    return [(s, min(dim, s + per)) for s in range(0, dim, per)]


class _TorchScanFn(torch.autograd.Function):
    """(u, dt (batch, dim, L), A (dim, N), B, C (batch, G, N, L)) -> (y (batch, dim, L), last (batch, dim, N))."""

    @staticmethod
    def _block(u, dt, A, B, C, s, e):
        G = B.shape[1]
        gidx = torch.arange(s, e, device=u.device) // (u.shape[1] // G)
        Bd = B.transpose(-1, -2)[:, gidx]  # (batch, c, L, N)
        Cd = C.transpose(-1, -2)[:, gidx]
        dtb, ub = dt[:, s:e], u[:, s:e]
        a = torch.exp(dtb[..., None] * A[s:e, None, :])
        h = _linear_scan(a, (dtb * ub)[..., None] * Bd)
        return gidx, Bd, Cd, dtb, ub, a, h

    @staticmethod
    def forward(ctx, u, dt, A, B, C):
        batch, dim, L = u.shape
        N = A.shape[1]
        y = u.new_empty(batch, dim, L)
        last = u.new_empty(batch, dim, N)
        with torch.no_grad():
            for s, e in _channel_blocks(batch, dim, L, N):
                *_, Cd, _, _, _, h = _TorchScanFn._block(u, dt, A, B, C, s, e)
                y[:, s:e] = (h * Cd).sum(-1)
                last[:, s:e] = h[:, :, -1]
        ctx.save_for_backward(u, dt, A, B, C)
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, dt, A, B, C = ctx.saved_tensors
        batch, dim, L = u.shape
        N, G = A.shape[1], B.shape[1]
        du, ddt, dA = torch.zeros_like(u), torch.zeros_like(u), torch.zeros_like(A)
        dBt = u.new_zeros(batch, G, L, N)
        dCt = u.new_zeros(batch, G, L, N)
        with torch.no_grad():
            for s, e in _channel_blocks(batch, dim, L, N):
                gidx, Bd, Cd, dtb, ub, a, h = _TorchScanFn._block(u, dt, A, B, C, s, e)
                # adjoint g_l = dL/dh_l = dy_l C_l + a_{l+1} g_{l+1} (+ dlast at l = L-1): a reverse scan
                src = Cd * (dy[:, s:e, :, None] if dy is not None else 0.0)
                if dlast is not None:
                    src = src.clone() if dy is None else src
                    src[:, :, -1] += dlast[:, s:e]
                a_next = torch.cat([a[:, :, 1:], a.new_zeros(batch, e - s, 1, N)], 2)
                g = _linear_scan(a_next.flip(2), src.flip(2)).flip(2)
                if dy is not None:
                    dCt.index_add_(1, gidx, dy[:, s:e, :, None] * h)
                dBt.index_add_(1, gidx, g * (dtb * ub)[..., None])
                s1 = (g * Bd).sum(-1)
                hprev = torch.cat([h.new_zeros(batch, e - s, 1, N), h[:, :, :-1]], 2)
                t = g * hprev * a  # dL/d(decay) * decay
                du[:, s:e] = dtb * s1
                ddt[:, s:e] = ub * s1 + (t * A[s:e, None, :]).sum(-1)
                dA[s:e] = (t * dtb[..., None]).sum((0, 2))
        return du, ddt, dA, dBt.transpose(-1, -2), dCt.transpose(-1, -2)


# ------------------------------------------------------------------------------------------- dispatch
def _common_groups(B4, C4):
    """Give B and C the same number of groups (the lcm of theirs) so one group index serves both."""
    gb, gc = B4.shape[1], C4.shape[1]
    if gb == gc:
        return B4, C4
    g = gb * gc // math.gcd(gb, gc)
    return B4.repeat_interleave(g // gb, dim=1), C4.repeat_interleave(g // gc, dim=1)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, backend="auto"):
    """Selective scan with the semantics and layout of mamba_ssm's ``selective_scan_fn``.

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) step sizes (before ``delta_bias`` / softplus).
        A: (dim, N) real state matrix (diagonal per channel; negative for a decaying state).
        B, C: (batch, N, L), or (batch, groups, N, L) with ``groups`` dividing ``dim``.
        D: optional (dim,) skip weight. z: optional (batch, dim, L) gate (``out * silu(z)``).
        delta_bias: optional (dim,) added to delta. delta_softplus: apply softplus to delta (+ bias).
        return_last_state: also return the final state.
        backend: ``"auto"`` (mamba_ssm's CUDA kernel for CUDA inputs when importable, else mfuser's C++ CPU
            kernel for float32 CPU inputs with N <= 64 when built, else the PyTorch chunked scan), or force
            ``"mamba"``, ``"kernel"`` or ``"torch"`` (ValueError if not usable for these inputs).

    Returns:
        out (batch, dim, L) in ``u.dtype``; with ``return_last_state`` also last_state (batch, dim, N).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend must be one of {BACKENDS}, got {backend!r}")
    dtype_in, cdt = u.dtype, _compute_dtype(u)
    kernel_ok = _HAS_KERNEL and u.device.type == "cpu" and cdt == torch.float32 and A.shape[1] <= _KERNEL_MAX_STATE
    if backend in ("auto", "mamba") and u.is_cuda and u.dtype != torch.float64:  # mamba: fp32/fp16/bf16 only
        fn = _mamba_fn()
        if fn is not None:
            return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                      return_last_state=return_last_state)
    if backend == "mamba":
        raise ValueError("selective_scan: backend 'mamba' needs CUDA inputs (not float64) and an importable mamba_ssm")
    if backend == "kernel" and not kernel_ok:
        raise ValueError(
            "selective_scan: backend 'kernel' needs the built mfuser._C, CPU float32 inputs and N <= "
            f"{_KERNEL_MAX_STATE} (kernel built: {_HAS_KERNEL}, device {u.device}, dtype {u.dtype}, N {A.shape[1]})")
    use_kernel = kernel_ok and backend in ("auto", "kernel")
    # the kernel reads bf16 inputs as they are when all four streamed ones are bf16 (CPU autocast), else float32
    sdt = cdt
    if use_kernel and _HAS_BF16_KERNEL and all(t.dtype == torch.bfloat16 for t in (u, delta, B, C)):
        sdt = torch.bfloat16

    B4 = B.to(sdt) if B.dim() == 4 else B.to(sdt)[:, None]
    C4 = C.to(sdt) if C.dim() == 4 else C.to(sdt)[:, None]
    B4, C4 = _common_groups(B4, C4)
    u_ = u.to(sdt)
    if use_kernel:  # bias, softplus and D fused in the kernel
        out, last = _scan_kernel(u_, delta.to(sdt), A, B4, C4, D, delta_bias, delta_softplus)
    else:
        dt = delta.to(cdt)
        if delta_bias is not None:
            dt = dt + delta_bias.to(cdt)[:, None]
        if delta_softplus:
            dt = F.softplus(dt)
        out, last = _TorchScanFn.apply(u_.contiguous(), dt.contiguous(), A.to(cdt).contiguous(), B4.contiguous(),
                                       C4.contiguous())
        if D is not None:
            out = out + u_ * D.to(cdt)[:, None]
    if z is not None:
        out = out.to(cdt) * F.silu(z.to(cdt))
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out


# ``from mfuser.layers import selective_scan`` yields this function (the package re-exports it under the module's
# name), so code written against the module path, e.g. ``mfuser.layers.selective_scan.select_backend(device)`` in
# tools/collect_env.py, also finds these helpers on the function. Prefer importing them directly.
selective_scan.select_backend = select_backend
selective_scan.selective_scan_ref = selective_scan_ref
selective_scan.kernel_available = kernel_available
selective_scan.bf16_kernel_available = bf16_kernel_available
