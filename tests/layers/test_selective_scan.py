"""mfuser.layers.selective_scan: every backend against the sequential reference (outputs, last state, all grads)."""
import importlib

import pytest
import torch

from mfuser.layers import select_backend, selective_scan, selective_scan_ref

scan_mod = importlib.import_module("mfuser.layers.selective_scan")

KERNEL_SKIP = "mfuser._C not built (run `python setup.py build_ext --inplace` or `pip install -e .`)"
BACKENDS = [
    pytest.param("kernel", marks=pytest.mark.skipif(not scan_mod.kernel_available(), reason=KERNEL_SKIP)),
    "torch",
]
ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, L, N, groups=None, c_groups="same", with_z=True, with_d=True, with_bias=True,
                dtype=torch.float32, seed=0, delta_scale=0.5, a_max=5.0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    bshape = (batch, N, L) if groups is None else (batch, groups, N, L)
    cg = groups if c_groups == "same" else c_groups
    cshape = (batch, N, L) if cg is None else (batch, cg, N, L)
    return {
        "u": rnd(batch, dim, L),
        "delta": rnd(batch, dim, L, scale=delta_scale),
        "A": (-torch.rand(dim, N, generator=g, dtype=torch.float64) * a_max).to(dtype),
        "B": rnd(*bshape),
        "C": rnd(*cshape),
        "D": rnd(dim) if with_d else None,
        "z": rnd(batch, dim, L) if with_z else None,
        "delta_bias": rnd(dim, scale=0.5) if with_bias else None,
    }


def run(fn, inputs, softplus=True, dtype=None, seed=1, **kw):
    """Forward with the last state, backward of a random projection; returns {name: tensor}."""
    args = {}
    for k, v in inputs.items():
        args[k] = None if v is None else v.detach().to(dtype or v.dtype).requires_grad_(True)
    out, last = fn(*(args[k] for k in ARG_NAMES), delta_softplus=softplus, return_last_state=True, **kw)
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    gl = torch.randn(last.shape, generator=g, dtype=torch.float64).to(last.dtype)
    ((out * gy).sum() + (last * gl).sum()).backward()
    res = {"out": out.detach(), "last_state": last.detach()}
    res.update({f"d{k}": v.grad for k, v in args.items() if v is not None})
    return res


def assert_close(ours, ref, rtol):
    assert ours.keys() == ref.keys()
    for k in ref:
        o, r = ours[k].double(), ref[k].double()
        assert o.shape == r.shape, k
        assert torch.isfinite(o).all(), k
        err = (o - r).abs().max().item() / max(r.abs().max().item(), 1e-30)
        assert err <= rtol, f"{k}: relative error {err:.3g} > {rtol}"


CASES = [
    # batch, dim, L, N, groups, c_groups, z, D, bias
    (2, 8, 37, 16, None, "same", True, True, True),
    (2, 8, 1, 16, None, "same", True, True, True),  # L = 1
    (1, 6, 1, 5, 3, "same", False, False, False),  # L = 1, grouped, nothing optional
    (2, 6, 130, 3, 3, "same", False, True, True),  # grouped, N padded to 8, L > 2 chunks
    (1, 4, 67, 20, 2, None, True, False, True),  # B grouped, C not; N = 20 (padded to 24)
    (2, 4, 97, 32, None, 4, True, True, False),  # C grouped (one group per channel), N = 32
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(backend, case):
    batch, dim, L, N, groups, c_groups, with_z, with_d, with_bias = case
    inputs = make_inputs(batch, dim, L, N, groups, c_groups, with_z, with_d, with_bias)
    ref = run(selective_scan_ref, inputs, dtype=torch.float64)  # float64 ground truth
    ours = run(selective_scan, inputs, backend=backend)
    assert ours["out"].dtype == torch.float32
    assert_close(ours, ref, 1e-4)
    ref32 = run(selective_scan_ref, inputs)  # and the fp32 reference, as the benchmark compares
    assert_close(ours, ref32, 1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_random_shapes(backend, seed):
    g = torch.Generator().manual_seed(100 + seed)

    def pick(*options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    dim = pick(2, 4, 6, 12)
    groups = pick(None, *[k for k in (1, 2, 3) if dim % k == 0])
    L = pick(1, 2, 63, 65, 129, int(torch.randint(1, 300, (1,), generator=g)))
    N = pick(1, 7, 8, 16, 17, 40)
    inputs = make_inputs(pick(1, 2, 3), dim, L, N, groups, pick("same", None), pick(True, False),
                         pick(True, False), pick(True, False), seed=seed)
    softplus = pick(True, False)
    if not softplus:
        inputs["delta"] = inputs["delta"].abs()
    ref = run(selective_scan_ref, inputs, softplus=softplus, dtype=torch.float64)
    assert_close(run(selective_scan, inputs, softplus=softplus, backend=backend), ref, 1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("softplus", [True, False])
def test_extreme_decays(backend, softplus):
    """delta up to 10 after softplus, A down to -100 (decays underflow to 0), and tiny steps, no NaN/inf."""
    inputs = make_inputs(2, 8, 150, 16, with_bias=False)
    delta = torch.linspace(-12.0, 10.0, 150).repeat(2, 8, 1)  # softplus: 6e-6 .. 10
    if not softplus:
        delta = delta.abs() + 1e-6
    inputs["delta"] = delta
    A = -torch.logspace(-3, 2, 16).repeat(8, 1)  # -1e-3 .. -100
    inputs["A"] = A
    ref = run(selective_scan_ref, inputs, softplus=softplus, dtype=torch.float64)
    ours = run(selective_scan, inputs, softplus=softplus, backend=backend)
    assert_close(ours, ref, 1e-4)


def test_torch_backend_float64_is_exact_and_chunking(monkeypatch):
    """Small chunk and block sizes exercise the two-level scan and the channel blocks of the fallback."""
    monkeypatch.setattr(scan_mod, "_TORCH_CHUNK", 8)
    monkeypatch.setattr(scan_mod, "_TORCH_BLOCK_ELEMS", 1000)
    inputs = make_inputs(2, 6, 77, 5, groups=3, dtype=torch.float64)
    ref = run(selective_scan_ref, inputs)
    ours = run(selective_scan, inputs, backend="torch")
    assert ours["out"].dtype == torch.float64
    assert_close(ours, ref, 1e-10)


@pytest.mark.skipif(not scan_mod.kernel_available(), reason=KERNEL_SKIP)
def test_kernel_code_paths_and_threads(monkeypatch):
    """Every vector code path this CPU supports (portable, AVX2, AVX-512) and 1 vs 2 threads agree."""
    inputs = make_inputs(2, 8, 45, 16, groups=2)
    ref = run(selective_scan_ref, inputs, dtype=torch.float64)
    n_threads = torch.get_num_threads()
    try:
        for level in range(scan_mod._ext.selective_scan_cpu_level() + 1):
            monkeypatch.setattr(scan_mod, "_KERNEL_LEVEL", level)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                assert_close(run(selective_scan, inputs, backend="kernel"), ref, 1e-4)
    finally:
        torch.set_num_threads(n_threads)


@pytest.mark.skipif(not scan_mod.kernel_available(), reason=KERNEL_SKIP)
def test_auto_uses_kernel_on_cpu(monkeypatch):
    calls = []
    orig = scan_mod._KernelScanFn.apply
    monkeypatch.setattr(scan_mod._KernelScanFn, "apply", lambda *a: calls.append(1) or orig(*a))
    inputs = make_inputs(1, 4, 9, 4)
    selective_scan(*(inputs[k] for k in ARG_NAMES))
    assert calls, "float32 CPU inputs should run the C++ kernel"
    assert "C++ CPU kernel" in select_backend("cpu")


def test_select_backend_names():
    assert isinstance(select_backend("cpu"), str) and select_backend("cpu")
    assert "CUDA" in select_backend("cuda") or "PyTorch" in select_backend("cuda")
    # tools/collect_env.py reaches it through the package attribute
    import mfuser.layers

    assert mfuser.layers.selective_scan.select_backend("cpu") == select_backend("cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_last_state_and_dtype(backend):
    inputs = make_inputs(1, 4, 10, 4)
    out = selective_scan(*(inputs[k] for k in ARG_NAMES), delta_softplus=True, backend=backend)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 10)
    half = {k: None if v is None else v.to(torch.bfloat16) for k, v in inputs.items()}
    out16 = selective_scan(*(half[k] for k in ARG_NAMES), delta_softplus=True, backend=backend)
    assert out16.dtype == torch.bfloat16
    ref = selective_scan_ref(*(half[k] for k in ARG_NAMES), delta_softplus=True)
    assert torch.allclose(out16.float(), ref.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["u", "delta"])
def test_nan_and_inf_propagate(backend, where):
    inputs = make_inputs(1, 3, 20, 8, with_z=False)
    inputs[where] = inputs[where].clone()
    inputs[where][0, 1, 7] = float("nan")
    out, last = selective_scan(*(inputs[k] for k in ARG_NAMES), delta_softplus=True, return_last_state=True,
                               backend=backend)
    ref = selective_scan_ref(*(inputs[k] for k in ARG_NAMES), delta_softplus=True)
    assert torch.isnan(out[0, 1, 7:]).all() and torch.isnan(last[0, 1]).all()
    assert torch.isfinite(out[0, 1, :7]).all() and torch.isfinite(out[0, [0, 2]]).all()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    inputs[where][0, 1, 7] = float("inf")
    out = selective_scan(*(inputs[k] for k in ARG_NAMES), delta_softplus=True, backend=backend)
    assert not torch.isfinite(out[0, 1, 7]), "inf input must not turn into a finite number"
    assert torch.isfinite(out[0, [0, 2]]).all()


def test_mamba_ssm_reference_equality():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as mamba_ref
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"mamba_ssm not importable ({type(e).__name__}: {e})")
    for groups in (None, 2):
        inputs = make_inputs(2, 4, 33, 8, groups=groups)
        args = [inputs[k] for k in ARG_NAMES]
        theirs, their_last = mamba_ref(*args, delta_softplus=True, return_last_state=True)
        ours, our_last = selective_scan(*args, delta_softplus=True, return_last_state=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(our_last, their_last, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_reference():
    inputs = {k: None if v is None else v.cuda() for k, v in make_inputs(2, 8, 70, 16).items()}
    ref = run(selective_scan_ref, inputs)
    assert_close(run(selective_scan, inputs), ref, 1e-4)
    assert_close(run(selective_scan, inputs, backend="torch"), ref, 1e-4)


def _bad(**over):
    inputs = make_inputs(2, 4, 6, 3)
    inputs.update(over)
    return [inputs[k] for k in ARG_NAMES]


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"u": torch.randn(4, 6)}, r"u must be \(batch, dim, L\)"),
        ({"u": torch.randn(2, 4, 0), "delta": torch.randn(2, 4, 0)}, r"L >= 1"),
        ({"delta": torch.randn(2, 4, 5)}, r"delta must be \(batch, dim, L\) = \(2, 4, 6\)"),
        ({"A": torch.randn(5, 3)}, r"A must be \(dim, N\) = \(4, N\)"),
        ({"A": torch.randn(4, 3, dtype=torch.complex64)}, r"A must be real"),
        ({"B": torch.randn(2, 3, 7)}, r"B must be \(batch, N, L\) = \(2, 3, 6\)"),
        ({"B": torch.randn(2, 3, 3, 6)}, r"groups dividing dim=4"),
        ({"C": torch.randn(2, 4, 6)}, r"C must be \(batch, N, L\)"),
        ({"D": torch.randn(3)}, r"D must be \(dim,\) = \(4,\)"),
        ({"z": torch.randn(2, 4)}, r"z must be \(batch, dim, L\) = \(2, 4, 6\)"),
        ({"delta_bias": torch.randn(4, 1)}, r"delta_bias must be \(dim,\) = \(4,\)"),
        ({"u": torch.ones(2, 4, 6, dtype=torch.long)}, r"u must be a floating-point tensor"),
    ],
)
def test_bad_input(over, pattern):
    for fn in (selective_scan, selective_scan_ref):
        with pytest.raises(ValueError, match=pattern):
            fn(*_bad(**over))


def test_bad_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(*_bad(), backend="fast")
    with pytest.raises(ValueError, match="backend 'mamba' needs CUDA"):
        selective_scan(*_bad(), backend="mamba")
    with pytest.raises(ValueError, match="backend 'kernel' needs"):
        selective_scan(*[None if t is None else t.double() for t in _bad()], backend="kernel")


def test_fallback_when_kernel_missing():
    """Without mfuser._C (no compiler at install time) the PyTorch scan is used and matches the reference."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['mfuser._C'] = None\n"  # makes `from mfuser import _C` raise ImportError
        "import torch\n"
        "from mfuser.layers.selective_scan import kernel_available, select_backend, selective_scan, "
        "selective_scan_ref\n"
        "assert not kernel_available(), 'kernel should look missing'\n"
        "assert 'PyTorch chunked scan' in select_backend('cpu'), select_backend('cpu')\n"
        "g = torch.Generator().manual_seed(0)\n"
        "u, dl, z = (torch.randn(2, 4, 70, generator=g) for _ in range(3))\n"
        "A = -torch.rand(4, 6, generator=g) * 3\n"
        "B, C = torch.randn(2, 6, 70, generator=g), torch.randn(2, 2, 6, 70, generator=g)\n"
        "args = [t.requires_grad_() for t in (u, dl, A, B, C)]\n"
        "out = selective_scan(*args, z=z, delta_softplus=True)\n"
        "ref = selective_scan_ref(*args, z=z, delta_softplus=True)\n"
        "torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)\n"
        "g1 = torch.autograd.grad(out.sum(), args)\n"
        "g2 = torch.autograd.grad(ref.sum(), args)\n"
        "for a, b in zip(g1, g2): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["out", "last_state"])
def test_gradient_of_one_output_only(backend, which):
    """Backward with only the output (no last-state gradient) or only the last state (no output gradient)."""
    inputs = make_inputs(2, 4, 50, 16, groups=2)
    grads = {}
    for name, fn, dtype in (("ref", selective_scan_ref, torch.float64), ("ours", selective_scan, None)):
        args = {k: None if v is None else v.detach().to(dtype or v.dtype).requires_grad_() for k, v in inputs.items()}
        kw = {"backend": backend} if name == "ours" else {}
        out, last = fn(*(args[k] for k in ARG_NAMES), delta_softplus=True, return_last_state=True, **kw)
        (out if which == "out" else last).pow(2).sum().backward()
        grads[name] = {k: v.grad for k, v in args.items() if v is not None}
    for k in [k for k, g in grads["ref"].items() if g is None]:  # D, z do not reach the last state
        g = grads["ours"].pop(k)
        assert g is None or not g.any(), k
        del grads["ref"][k]
    assert_close(grads["ours"], grads["ref"], 1e-4)
