"""MVFuser: parameter counts, wiring against a plain re-derivation, shapes, init, bidirectional option."""
import pytest
import torch
import torch.nn.functional as F

from mfuser.layers.selective_scan import selective_scan_ref
from mfuser.modeling.fusion import MVFuser


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("d_model, expected", [(1024, 1_667_585), (256, 109_697)])
def test_parameter_count_matches_reference(d_model, expected):
    assert n_params(MVFuser(d_model)) == expected


@pytest.mark.parametrize("d_model, expected", [(1024, 1_758_721), (256, 120_193)])
def test_parameter_count_bidirectional(d_model, expected):
    assert n_params(MVFuser(d_model, bidirectional=True)) == expected


def test_reference_parameter_shapes():
    m = MVFuser(1024)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (1024, 1024), "conv1d_x.weight": (512, 1, 3), "conv1d_z.weight": (512, 1, 3),
        "x_proj.weight": (96, 512), "dt_proj.weight": (512, 64), "dt_proj.bias": (512,), "A_log": (512, 16),
        "D": (512,), "norm.weight": (512,), "out_proj.weight": (1024, 512), "scale": (),
    }
    assert torch.equal(m.A_log[3], torch.log(torch.arange(1, 17.0)))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert m.scale.item() == pytest.approx(1e-3)


def plain_forward(m, x, double_bias=True):
    """The reference computation written out with the sequential scan."""
    xz = (x @ m.in_proj.weight.T).transpose(1, 2)
    xs, z = xz.chunk(2, dim=1)
    xs = F.silu(F.conv1d(xs, m.conv1d_x.weight, padding=1, groups=xs.shape[1]))
    z = F.silu(F.conv1d(z, m.conv1d_z.weight, padding=1, groups=z.shape[1]))
    dbl = xs.transpose(1, 2) @ m.x_proj.weight.T
    dt, B, C = torch.split(dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = dt @ m.dt_proj.weight.T + (m.dt_proj.bias if double_bias else 0)
    y = selective_scan_ref(xs, dt.transpose(1, 2), -torch.exp(m.A_log), B.transpose(1, 2), C.transpose(1, 2), m.D,
                           delta_bias=m.dt_proj.bias, delta_softplus=True).transpose(1, 2)
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * m.norm.weight * F.silu(z.transpose(1, 2))
    return (y @ m.out_proj.weight.T) * m.scale


@pytest.mark.parametrize("double_bias", [True, False])
def test_matches_plain_derivation(double_bias):
    torch.manual_seed(0)
    m = MVFuser(32, double_dt_bias=double_bias).eval()
    with torch.no_grad():
        m.scale.fill_(1.0)
    x = torch.randn(2, 41, 32)
    torch.testing.assert_close(m(x), plain_forward(m, x, double_bias), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("L", [2050, 2594, 2049])  # CLIP, EVA, SigLIP joint sequence lengths
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_at_mfuser_lengths(L, bidirectional):
    m = MVFuser(32, bidirectional=bidirectional)
    out = m(torch.randn(1, L, 32))
    assert out.shape == (1, L, 32) and torch.isfinite(out).all()


def test_near_identity_at_init_and_trains():
    torch.manual_seed(0)
    m = MVFuser(64).eval()
    x = torch.randn(2, 50, 64)
    upd = m(x)
    with torch.no_grad():
        m.scale.fill_(1.0)
    full = m(x)
    torch.testing.assert_close(upd, 1e-3 * full)
    assert upd.abs().max() < 1e-2 * x.abs().max()  # x + update is close to x
    m.train()
    m(x).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    m = MVFuser(32).eval()
    x = torch.randn(1, 20, 32)
    assert torch.equal(m(x), m(x))


def _influence_of_last_token(m, L=30):
    torch.manual_seed(1)
    x = torch.randn(1, L, m.d_model)
    x2 = x.clone()
    x2[:, -1] += 1.0
    with torch.no_grad():
        return (m(x2) - m(x)).abs().amax(-1)[0]  # (L,)


def test_one_way_scan_is_causal_up_to_the_conv():
    diff = _influence_of_last_token(MVFuser(16).eval())
    assert diff[:-2].max() == 0  # the k=3 convs reach one token ahead, the scan none
    assert diff[-2:].min() > 0


def test_bidirectional_carries_information_backwards():
    diff = _influence_of_last_token(MVFuser(16, bidirectional=True).eval())
    assert diff[0] > 0 and (diff[:-2] > 0).all()


def test_bad_input():
    m = MVFuser(16)
    with pytest.raises(ValueError, match=r"x must be \(batch, L, d_model=16\)"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"x must be \(batch, L, d_model=16\)"):
        m(torch.randn(5, 16))
    with pytest.raises(ValueError, match="expand \\* d_model must be even"):
        MVFuser(15)
    with pytest.raises(ValueError, match="dt_rank"):
        MVFuser(16, dt_rank=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_flops_counted_per_batch_element(bidirectional):
    """The channels-first matmuls are counted by fvcore for every batch element (tools/benchmark.py's flops_ratio)."""
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    m = MVFuser(32, bidirectional=bidirectional).eval()
    L, d, R, N = 19, m.d_inner // 2, m.dt_rank, m.d_state
    per_token = m.d_model * m.d_inner + (2 if bidirectional else 1) * (d * (R + 2 * N) + R * d) + d * m.d_model

    def matmul_flops(batch):
        flops = FlopCountAnalysis(m, (torch.randn(batch, L, 32),))
        flops.unsupported_ops_warnings(False)
        ops = flops.by_operator()
        return ops.get("bmm", 0) + ops.get("linear", 0)

    assert matmul_flops(1) == L * per_token
    assert matmul_flops(3) == 3 * L * per_token


def test_ssm_inputs_are_contiguous_for_the_scan():
    """in_proj / dt_proj produce (B, d, L) contiguous tensors: no transposed copies before the conv and scan."""
    m = MVFuser(32)
    x = torch.randn(2, 11, 32)
    seen = {}
    m.conv1d_x.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    m.conv1d_z.register_forward_pre_hook(lambda mod, args: seen.setdefault("z", args[0]))
    m(x)
    assert seen["x"].shape == seen["z"].shape == (2, 16, 11)
    assert seen["x"].is_contiguous() and seen["z"].is_contiguous()
    delta, _, Bm, Cm, _ = m._ssm_inputs(torch.randn(2, 16, 11), m.x_proj, m.dt_proj, m.A_log)
    assert delta.shape == (2, 16, 11) and delta.is_contiguous()
    assert Bm.shape == Cm.shape == (2, m.d_state, 11)
