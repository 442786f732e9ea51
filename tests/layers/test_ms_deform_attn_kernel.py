"""The fused CPU kernels (forward and backward) of the deformable-attention sampling against the PyTorch
(grid_sample) path and its autograd."""
import importlib

import pytest
import torch

from mfuser.layers import MSDeformAttn, ms_deform_attn_core, ms_deform_attn_core_pytorch

mod = importlib.import_module("mfuser.layers.ms_deform_attn")
needs_kernel = pytest.mark.skipif(not mod.deform_kernel_available(),
                                  reason="mfuser._C without ms_deform_attn_fwd/bwd_cpu (rebuild: pip install -e .)")
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
def test_auto_uses_the_kernels_also_for_training(monkeypatch):
    calls = {"fwd": 0, "bwd": 0}
    for name, key in (("ms_deform_attn_fwd_cpu", "fwd"), ("ms_deform_attn_bwd_cpu", "bwd")):
        orig = getattr(mod._ext, name)
        monkeypatch.setattr(mod._ext, name, lambda *a, _o=orig, _k=key: calls.__setitem__(_k, calls[_k] + 1) or _o(*a),
                            raising=False)
    grids = []
    orig_grid_sample = torch.nn.functional.grid_sample
    monkeypatch.setattr(torch.nn.functional, "grid_sample",
                        lambda *a, **k: grids.append(1) or orig_grid_sample(*a, **k))
    value, loc, attn = _inputs(8)
    ms_deform_attn_core(value, SIZES, loc, attn)
    assert calls == {"fwd": 1, "bwd": 0}
    for t in (value, loc, attn):
        t.requires_grad_(True)
    out = ms_deform_attn_core(value, SIZES, loc, attn)  # training: the fused forward and backward
    assert out.grad_fn is not None
    out.sum().backward()
    assert calls == {"fwd": 2, "bwd": 1} and not grids
    assert all(t.grad is not None for t in (value, loc, attn))
    # float64 (gradcheck) and backend="torch" take the grid_sample path
    ms_deform_attn_core(value.double(), SIZES, loc.double(), attn.double()).sum().backward()
    ms_deform_attn_core(value, SIZES, loc, attn, backend="torch").sum().backward()
    assert calls == {"fwd": 2, "bwd": 1} and len(grids) == 2 * len(SIZES)
    with pytest.raises(ValueError, match="backend 'kernel' needs"):
        ms_deform_attn_core(value.double(), SIZES, loc.double(), attn.double(), backend="kernel")


def _grads(backend, value, loc, attn, grad_out, sizes=SIZES):
    """(out, grad value, grad loc, grad attn) of ms_deform_attn_core for the upstream gradient grad_out."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, attn)]
    out = ms_deform_attn_core(*leaves[:1], sizes, *leaves[1:], backend=backend)
    out.backward(grad_out.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves]


def _border_inputs(D, B=2, Lq=11, M=3, P=4, seed=0):
    """_inputs plus points on pixel centres and edges, exactly on the map's border, half outside, wholly outside
    (their pixel coordinates are exact in float32, so that both paths pick the same 4 neighbours)."""
    value, loc, attn = _inputs(D, B=B, Lq=Lq, M=M, P=P, seed=seed)
    special = [(0.5, 0.5), (0.0, 0.3), (1.0, 0.7), (0.25, 1.0), (0.0, 0.0), (1.0, 1.0),  # centre, border, corners
               (-0.1, 0.5), (1.1, 0.5), (0.5, -0.2), (2.0, 2.0), (-3.0, 0.5)]  # partly / wholly outside
    for k, xy in enumerate(special):
        loc[k % B, k % Lq, k % M, :, k % P] = torch.tensor(xy)
    return value, loc, attn


@needs_kernel
@pytest.mark.parametrize("D", [32, 16, 19])
def test_kernel_gradients_match_autograd_of_grid_sample_path(D):
    value, loc, attn = _border_inputs(D)
    grad_out = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * D, generator=torch.Generator().manual_seed(1))
    ref = _grads("torch", value, loc, attn, grad_out)
    got = _grads("kernel", value, loc, attn, grad_out)
    for name, g, r in zip(("out", "value", "loc", "attn"), got, ref):
        assert g.dtype == r.dtype == torch.float32 and g.shape == r.shape, name
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item(), msg=name)
    # points wholly outside the map: no contribution, no gradient (the (2, 2) and (-3, 0.5) locations)
    assert got[2][1, 9, 0, :, 1].abs().sum() == 0 and got[3][1, 9, 0, :, 1].abs().sum() == 0


@needs_kernel
def test_kernel_gradients_for_bf16_values():
    """A bf16 value is read as stored: the gradients are those of the float32 path on the same (bf16-exact)
    values; grad_value comes back in bf16 like the value, the others in float32."""
    value, loc, attn = _border_inputs(32)
    value = value.bfloat16()
    grad_out = torch.randn(2, loc.shape[1], 3 * 32, generator=torch.Generator().manual_seed(2)).bfloat16()
    ref = _grads("torch", value.float(), loc, attn, grad_out.float())
    got = _grads("kernel", value, loc, attn, grad_out)
    assert got[0].dtype == got[1].dtype == torch.bfloat16 and got[2].dtype == got[3].dtype == torch.float32
    torch.testing.assert_close(got[1].float(), ref[1].bfloat16().float(), rtol=8e-3, atol=1e-5)
    for g, r in zip(got[2:], ref[2:]):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


@needs_kernel
def test_kernel_backward_on_any_thread_count():
    """grad_value is scattered by (batch, head) pairs: the same bits on 1 and 2 threads (B * M = 2 pairs); with
    more threads than pairs the queries are split into chunks (3, 5 threads), equal up to float rounding."""
    value, loc, attn = _border_inputs(16, B=1, Lq=40, M=2)
    grad_out = torch.randn(1, 40, 32, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    try:
        res = {}
        for n in (1, 2, 3, 5):
            torch.set_num_threads(n)
            res[n] = _grads("kernel", value, loc, attn, grad_out)
    finally:
        torch.set_num_threads(threads)
    ref = _grads("torch", value, loc, attn, grad_out)
    for g1, g2 in zip(res[1], res[2]):
        assert torch.equal(g1, g2)
    for n in (3, 5):
        assert torch.equal(res[n][2], res[1][2]) and torch.equal(res[n][3], res[1][3])  # per point: same bits
        torch.testing.assert_close(res[n][1], res[1][1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(res[5][1], ref[1], rtol=1e-5, atol=1e-5)


@needs_kernel
def test_module_training_step_through_the_kernels_under_bf16_autocast(monkeypatch):
    """MSDeformAttn's parameter gradients through the fused kernels equal those through the grid_sample path, in
    float32 and under bf16 autocast (value map bf16, locations and weights float32)."""
    torch.manual_seed(0)
    m = MSDeformAttn(d_model=32, n_levels=2, n_heads=2, n_points=3)
    with torch.no_grad():
        m.sampling_offsets.weight.normal_(0, 0.3)
        m.attention_weights.weight.normal_(0, 0.3)
    shapes = torch.tensor([[6, 5], [3, 3]])
    x, q, ref_pts = torch.randn(2, 39, 32), torch.randn(2, 7, 32), torch.rand(2, 7, 2, 2)
    start = torch.tensor([0, 30])
    for autocast in (False, True):
        grads = []
        for kernel in (True, False):
            monkeypatch.setattr(mod, "_HAS_KERNEL", kernel)
            m.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = m(q, ref_pts, x, shapes, start)
            out.float().square().sum().backward()
            grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
        for k in grads[0]:
            scale = grads[1][k].abs().max().item()
            tol = dict(rtol=2e-2, atol=2e-2 * scale) if autocast else dict(rtol=1e-4, atol=1e-5 * scale)
            torch.testing.assert_close(grads[0][k], grads[1][k], **tol, msg=k)


@needs_kernel
def test_kernel_threads_agree_and_module_uses_it(monkeypatch):
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
    monkeypatch.setattr(mod, "_HAS_KERNEL", False)
    with torch.no_grad():
        slow = m(q, ref_pts, x, shapes, start)  # the PyTorch path
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
