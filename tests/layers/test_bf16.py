"""bf16 (CPU autocast) in the low-level ops: the scan kernel's bf16 forward, float32 deformable sampling, helpers."""
import importlib

import pytest
import torch

from mfuser.layers import MSDeformAttn, ms_deform_attn_core_pytorch, selective_scan
from mfuser.layers.amp import cpu_bf16_support, float32_region, to_float32
from tests.layers.test_ms_deform_attn import SHAPES, _random_inputs
from tests.layers.test_selective_scan import ARG_NAMES, KERNEL_SKIP, make_inputs

scan_mod = importlib.import_module("mfuser.layers.selective_scan")
needs_bf16_kernel = pytest.mark.skipif(not scan_mod.bf16_kernel_available(), reason=KERNEL_SKIP)


def _bf16_inputs(**kw):
    """MFuser-like scan inputs with u, delta, B, C (and z) in bf16, A / D / delta_bias in float32."""
    inputs = make_inputs(**kw)
    for k in ("u", "delta", "B", "C", "z"):
        if inputs[k] is not None:
            inputs[k] = inputs[k].bfloat16()
    return inputs


def _scan(inputs, **kw):
    args = {k: None if v is None else v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    out, last = selective_scan(*(args[k] for k in ARG_NAMES), delta_softplus=True, return_last_state=True, **kw)
    g = torch.Generator().manual_seed(3)
    weights = torch.randn(out.shape, generator=g).bfloat16().float()  # exact in bf16: the same dy for both dtypes
    (out.float() * weights).sum().add(last.sum()).backward()
    return out, last, {k: v.grad for k, v in args.items() if v is not None}


@needs_bf16_kernel
@pytest.mark.parametrize("shape", [dict(batch=2, dim=8, L=37, N=16, with_z=False),
                                   dict(batch=1, dim=6, L=130, N=3, groups=3, with_z=False),
                                   dict(batch=2, dim=4, L=5, N=40, groups=2, c_groups=None, with_z=True)])
def test_bf16_kernel_reads_bf16_and_keeps_a_float32_state(shape, monkeypatch):
    """bf16 in -> bf16 out with a float32 last state; equal to the float32 kernel on the same (bf16) values up to
    the output's bf16 rounding; gradients in the inputs' dtypes and equal to float32 ones up to bf16 rounding."""
    inputs = _bf16_inputs(**shape)
    calls = []
    orig = scan_mod._ext.selective_scan_fwd_cpu_bf16
    monkeypatch.setattr(scan_mod._ext, "selective_scan_fwd_cpu_bf16", lambda *a: calls.append(1) or orig(*a),
                        raising=False)
    out, last, grads = _scan(inputs, backend="kernel")
    assert calls, "all-bf16 inputs should run the bf16 forward"
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    ref_out, ref_last, ref_grads = _scan({k: None if v is None else v.float() for k, v in inputs.items()},
                                         backend="kernel")
    if inputs["z"] is None:  # the same float32 result, rounded once
        torch.testing.assert_close(out, ref_out.bfloat16(), rtol=0, atol=0)
    else:  # the gate multiplies the rounded scan output: rounded twice
        torch.testing.assert_close(out.float(), ref_out.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-6)
    for k, g in grads.items():  # bf16 inputs get bf16 gradients (rounded float32 ones), the others float32 ones
        assert g.dtype == inputs[k].dtype, k
        expected = ref_grads[k].to(g.dtype)
        if inputs["z"] is None:
            torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6 * ref_grads[k].abs().max().item())
        else:
            torch.testing.assert_close(g.float(), expected.float(), rtol=2e-2, atol=2e-2 * expected.abs().max().item())


@needs_bf16_kernel
def test_bf16_kernel_every_code_path_and_the_fallback_agree(monkeypatch):
    inputs = _bf16_inputs(batch=2, dim=8, L=45, N=16, groups=2)
    ref, _, _ = _scan(inputs, backend="torch")  # the PyTorch scan computes bf16 inputs in float32
    for level in range(scan_mod._ext.selective_scan_cpu_level() + 1):
        monkeypatch.setattr(scan_mod, "_KERNEL_LEVEL", level)
        out, _, _ = _scan(inputs, backend="kernel")
        torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)
    monkeypatch.setattr(scan_mod, "_HAS_BF16_KERNEL", False)  # an extension built before the bf16 forward
    out, _, _ = _scan(inputs, backend="kernel")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


@needs_bf16_kernel
def test_bf16_kernel_nan_stays_nan_and_rounding_is_to_nearest_even():
    inputs = _bf16_inputs(batch=1, dim=3, L=20, N=8, with_z=False, with_d=True)
    inputs["u"] = inputs["u"].clone()
    inputs["u"][0, 1, 7] = float("nan")
    out = selective_scan(*(inputs[k] for k in ARG_NAMES), delta_softplus=True, backend="kernel")
    assert torch.isnan(out[0, 1, 7:]).all() and torch.isfinite(out[0, [0, 2]]).all()
    # D * u alone (B = 0, u = 1): the kernel's float32 -> bf16 rounding of D must be torch's (ties to even, the
    # largest values)
    D = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -1.0 - 2**-8, 3.3961e38])
    zeros = torch.zeros(1, 8, 1, dtype=torch.bfloat16)
    ones = torch.ones(1, 4, 1, dtype=torch.bfloat16)
    out = selective_scan(ones, torch.zeros_like(ones), -torch.ones(4, 8), zeros, zeros, D=D, backend="kernel")
    assert torch.equal(out[0, :, 0], D.bfloat16()), (out[0, :, 0], D.bfloat16())


def test_mixed_dtypes_compute_in_float32():
    inputs = make_inputs(batch=1, dim=4, L=12, N=8)
    inputs["u"] = inputs["u"].bfloat16()  # only u in bf16: everything is computed in float32
    out = selective_scan(*(inputs[k] for k in ARG_NAMES), delta_softplus=True)
    ref = selective_scan(*(None if inputs[k] is None else inputs[k].float() for k in ARG_NAMES), delta_softplus=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref.bfloat16(), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- MSDeformAttn
def test_deformable_sampling_runs_in_float32_for_bf16_values():
    """A bf16 value map is sampled in float32 (grid_sample refuses a bf16 map with a float32 grid): the result is
    the float32 result on the same values, returned in bf16."""
    value, loc, attn = _random_inputs()
    out = ms_deform_attn_core_pytorch(value.bfloat16(), torch.tensor(SHAPES), loc, attn.bfloat16())
    ref = ms_deform_attn_core_pytorch(value.bfloat16().float(), torch.tensor(SHAPES), loc, attn.bfloat16().float())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref.bfloat16(), rtol=0, atol=0)


def test_msdeformattn_under_bf16_autocast_samples_at_float32_locations(monkeypatch):
    """Under autocast the sampling locations and weights reach the sampling in float32 (bf16 would move a location by
    up to a quarter pixel) while the value map may stay bf16; the output is close to the float32 module's."""
    ms_mod = importlib.import_module("mfuser.layers.ms_deform_attn")
    torch.manual_seed(0)
    mod = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2).eval()
    with torch.no_grad():
        mod.sampling_offsets.weight.normal_(0, 0.3)
        mod.attention_weights.weight.normal_(0, 0.3)
    shapes = torch.tensor([[64, 64], [32, 32]])
    S, Lq = 64 * 64 + 32 * 32, 50
    x, q = torch.randn(1, S, 32), torch.randn(1, Lq, 32)
    ref_pts = torch.rand(1, Lq, 2, 2)
    start = torch.tensor([0, 64 * 64])
    seen = []
    core = ms_mod.ms_deform_attn_core

    def recording_core(v, s, loc, a, **kw):
        seen.append((v.dtype, loc.dtype, a.dtype))
        return core(v, s, loc, a, **kw)

    monkeypatch.setattr(ms_mod, "ms_deform_attn_core", recording_core)
    grids = []
    orig = torch.nn.functional.grid_sample
    monkeypatch.setattr(torch.nn.functional, "grid_sample",
                        lambda v, g, **kw: grids.append(g.dtype) or orig(v, g, **kw))
    with torch.no_grad():
        ref = mod(q, ref_pts, x, shapes, start)
        outs = []
        for kernel in (True, False):  # the fused kernel where built, and the grid_sample path
            monkeypatch.setattr(ms_mod, "_HAS_KERNEL", kernel and ms_mod.deform_kernel_available())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outs.append(mod(q, ref_pts, x, shapes, start))
    assert seen[1:] == [(torch.bfloat16, torch.float32, torch.float32)] * 2
    assert grids and set(grids) == {torch.float32}
    for out in outs:
        assert out.dtype == torch.bfloat16
        err = (out.float() - ref).abs().max() / ref.abs().max()
        assert err < 3e-2, err


# ------------------------------------------------------------------------------------------- helpers
def test_cpu_bf16_support_asks_torch(monkeypatch):
    native, what = cpu_bf16_support()
    assert isinstance(native, bool) and isinstance(what, str) and what
    cpu_bf16_support.cache_clear()
    try:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        assert cpu_bf16_support() == (False, "no AVX512-BF16 or AMX")
        cpu_bf16_support.cache_clear()
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
        assert cpu_bf16_support() == (True, "AVX512-BF16")
    finally:
        cpu_bf16_support.cache_clear()


def test_float32_region_and_to_float32():
    x = torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x.T).dtype == torch.bfloat16
        with float32_region("cpu"):
            assert (x @ x.T).dtype == torch.float32
    tree = {"a": x.bfloat16(), "b": [x.half(), (x.double(), torch.ones(2, dtype=torch.long))], "c": 3}
    out = to_float32(tree)
    assert out["a"].dtype == torch.float32 and out["b"][0].dtype == torch.float32
    assert out["b"][1][0].dtype == torch.float64 and out["b"][1][1].dtype == torch.long and out["c"] == 3
    assert isinstance(out["b"][1], tuple)
