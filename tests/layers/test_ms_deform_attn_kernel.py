"""The fused CPU kernel of the deformable-attention sampling against the PyTorch (grid_sample) path."""
import importlib

import pytest
import torch

from mfuser.layers import MSDeformAttn, ms_deform_attn_core, ms_deform_attn_core_pytorch

mod = importlib.import_module("mfuser.layers.ms_deform_attn")
needs_kernel = pytest.mark.skipif(not mod.deform_kernel_available(),
                                  reason="mfuser._C without ms_deform_attn_fwd_cpu (rebuild: pip install -e .)")
SIZES = [(3, 5), (2, 3), (1, 1), (7, 4)]  # odd, non-square, a 1x1 level


def _inputs(D, B=2, Lq=11, M=3, P=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in SIZES)
    value = torch.randn(B, S, M, D, generator=g)
    loc = torch.rand(B, Lq, M, len(SIZES), P, 2, generator=g) * 1.6 - 0.3  # some neighbourhoods outside the map
    loc[0, 0, 0, 0, 0] = torch.tensor([-0.5, 0.5])  # wholly outside: contributes 0
    attn = torch.rand(B, Lq, M, len(SIZES), P, generator=g)
    return value, loc, attn


@needs_kernel
@pytest.mark.parametrize("D", [32, 16, 19, 4])
def test_kernel_matches_grid_sample_path(D):
    value, loc, attn = _inputs(D)
    ref = ms_deform_attn_core_pytorch(value, SIZES, loc, attn)
    out = ms_deform_attn_core(value, SIZES, loc, attn, backend="kernel")
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # a bf16 value map is read as stored; sums in float32: the float32 result on the same values, in bf16
    out16 = ms_deform_attn_core(value.bfloat16(), SIZES, loc, attn, backend="kernel")
    ref16 = ms_deform_attn_core_pytorch(value.bfloat16().float(), SIZES, loc, attn)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), ref16, rtol=8e-3, atol=1e-5)


@needs_kernel
def test_auto_uses_the_kernel_only_without_gradients(monkeypatch):
    calls = []
    orig = mod._ext.ms_deform_attn_fwd_cpu
    monkeypatch.setattr(mod._ext, "ms_deform_attn_fwd_cpu", lambda *a: calls.append(1) or orig(*a), raising=False)
    value, loc, attn = _inputs(8)
    ms_deform_attn_core(value, SIZES, loc, attn)
    assert len(calls) == 1
    value.requires_grad_(True)
    out = ms_deform_attn_core(value, SIZES, loc, attn)  # training: the autograd path
    out.sum().backward()
    assert len(calls) == 1 and value.grad is not None
    with torch.no_grad():
        ms_deform_attn_core(value, SIZES, loc, attn)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="backend 'kernel' needs"):
        ms_deform_attn_core(value.double(), SIZES, loc.double(), attn.double(), backend="kernel")


@needs_kernel
def test_kernel_threads_agree_and_module_uses_it():
    value, loc, attn = _inputs(32, B=2, Lq=300)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(ms_deform_attn_core(value, SIZES, loc, attn, backend="kernel"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])  # every query is computed alone: same result on any thread count
    torch.manual_seed(0)
    m = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2).eval()
    shapes = torch.tensor([[6, 5], [3, 3]])
    x, q, ref_pts = torch.randn(2, 39, 32), torch.randn(2, 7, 32), torch.rand(2, 7, 2, 2)
    start = torch.tensor([0, 30])
    with torch.no_grad():
        fast = m(q, ref_pts, x, shapes, start)
    slow = m(q, ref_pts, x, shapes, start)  # grad mode: the PyTorch path
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def test_pytorch_path_when_the_kernel_is_missing(monkeypatch):
    monkeypatch.setattr(mod, "_HAS_KERNEL", False)
    value, loc, attn = _inputs(8)
    out = ms_deform_attn_core(value, SIZES, loc, attn)
    torch.testing.assert_close(out, ms_deform_attn_core_pytorch(value, SIZES, loc, attn))
    with pytest.raises(ValueError, match="kernel built: False"):
        ms_deform_attn_core(value, SIZES, loc, attn, backend="kernel")
    with pytest.raises(ValueError, match="backend must be one of"):
        ms_deform_attn_core(value, SIZES, loc, attn, backend="fast")
