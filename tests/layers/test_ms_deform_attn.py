"""MSDeformAttn (pure PyTorch): against a per-point bilinear reference, gradcheck, module semantics."""
import math

import pytest
import torch

from mfuser.layers import MSDeformAttn, ms_deform_attn_core_pytorch

SHAPES = [(3, 5), (2, 3), (1, 1)]  # odd, non-square, a 1x1 level


def _bilinear(img, x, y):
    """img (D, H, W); (x, y) normalised in [0, 1] with pixel centres at (j + .5) / W; zeros outside."""
    D, H, W = img.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(D, dtype=img.dtype)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < H and 0 <= xx < W:
                wgt = (1 - abs(px - xx)) * (1 - abs(py - yy))
                out = out + wgt * img[:, yy, xx]
    return out


def _reference(value, shapes, loc, attn):
    B, S, M, D = value.shape
    _, Lq, _, L, P, _ = loc.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(B, Lq, M, D, dtype=value.dtype)
    for b in range(B):
        for m in range(M):
            for lvl, (h, w) in enumerate(shapes):
                img = value[b, starts[lvl]:starts[lvl] + h * w, m].T.reshape(D, h, w)
                for q in range(Lq):
                    for p in range(P):
                        x, y = loc[b, q, m, lvl, p].tolist()
                        out[b, q, m] += attn[b, q, m, lvl, p] * _bilinear(img, x, y)
    return out.reshape(B, Lq, M * D)


def _random_inputs(dtype=torch.float32, B=2, Lq=3, M=2, D=4, P=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in SHAPES)
    L = len(SHAPES)
    value = torch.randn(B, S, M, D, generator=g, dtype=dtype)
    loc = torch.rand(B, Lq, M, L, P, 2, generator=g, dtype=dtype) * 1.4 - 0.2  # some points outside [0, 1]
    attn = torch.rand(B, Lq, M, L, P, generator=g, dtype=dtype)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return value, loc, attn


def test_core_matches_per_point_reference():
    value, loc, attn = _random_inputs()
    out = ms_deform_attn_core_pytorch(value, torch.tensor(SHAPES), loc, attn)
    ref = _reference(value, SHAPES, loc, attn)
    assert out.shape == ref.shape == (2, 3, 8)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_core_sampling_at_pixel_centre_returns_pixel():
    value, loc, attn = _random_inputs(B=1, Lq=1, M=1, P=1)
    h, w = SHAPES[0]
    loc[..., 0, :, 0] = (2 + 0.5) / w  # x of column 2
    loc[..., 0, :, 1] = (1 + 0.5) / h  # y of row 1
    attn.zero_()
    attn[..., 0, 0] = 1.0
    out = ms_deform_attn_core_pytorch(value, SHAPES, loc, attn)
    torch.testing.assert_close(out[0, 0], value[0, 1 * w + 2, 0])


def test_core_gradcheck_float64():
    value, loc, attn = _random_inputs(dtype=torch.float64, B=1, Lq=2, M=2, D=2, P=2, seed=1)
    value.requires_grad_()
    loc.requires_grad_()
    attn.requires_grad_()
    shapes = torch.tensor(SHAPES)
    assert torch.autograd.gradcheck(
        lambda v, l, a: ms_deform_attn_core_pytorch(v, shapes, l, a), (value, loc, attn), eps=1e-6, atol=1e-4
    )


def _module_inputs(mod, B=2, Lq=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    S = int(shapes.prod(1).sum())
    query = torch.randn(B, Lq, mod.d_model, generator=g)
    ref = torch.rand(B, Lq, mod.n_levels, 2, generator=g)
    x = torch.randn(B, S, mod.d_model, generator=g)
    return query, ref, x, shapes, starts


def test_module_matches_reference_and_padding_mask():
    torch.manual_seed(0)
    mod = MSDeformAttn(d_model=16, n_levels=3, n_heads=2, n_points=3)
    with torch.no_grad():  # non-trivial offsets / weights
        mod.sampling_offsets.weight.normal_(0, 0.3)
        mod.attention_weights.weight.normal_(0, 0.3)
    query, ref, x, shapes, starts = _module_inputs(mod)
    out = mod(query, ref, x, shapes, starts)
    assert out.shape == (2, 5, 16)
    # recompute by hand through the reference sampler
    B, Lq = query.shape[:2]
    M, L, P = 2, 3, 3
    value = mod.value_proj(x).view(B, -1, M, 8)
    off = mod.sampling_offsets(query).view(B, Lq, M, L, P, 2)
    attn = mod.attention_weights(query).view(B, Lq, M, L * P).softmax(-1).view(B, Lq, M, L, P)
    norm = torch.tensor([[w, h] for h, w in SHAPES], dtype=torch.float32)
    loc = ref[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    expected = mod.output_proj(_reference(value.detach(), SHAPES, loc.detach(), attn.detach()))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # masking every token gives output_proj(0) = bias
    mask = torch.ones(B, x.shape[1], dtype=torch.bool)
    out_masked = mod(query, ref, x, shapes, starts, mask)
    torch.testing.assert_close(out_masked, mod.output_proj.bias.expand_as(out_masked))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [12, 16, 1])
def test_softmax_rows_equals_softmax_over_the_last_dim_with_gradients(n, dtype):
    from mfuser.layers.ms_deform_attn import _softmax_rows

    x = (4 * torch.randn(3, 7, 2 * n, generator=torch.Generator().manual_seed(n), dtype=dtype)).requires_grad_()
    got = _softmax_rows(x, n)
    expected = x.reshape(-1, n).softmax(-1)
    assert got.shape == (3 * 7 * 2, n) and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got.sum(-1), torch.ones(42, dtype=dtype))
    g = torch.randn(42, n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (grad_got,) = torch.autograd.grad(got, x, g)
    (grad_expected,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(grad_got, grad_expected)  # dtype defaults: float32 within 1e-5, float64 1e-7


def test_module_init_and_bad_input():
    mod = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    bias = mod.sampling_offsets.bias.view(4, 3, 2, 2)
    # point p of each head is (p+1) times the head's direction
    torch.testing.assert_close(bias[:, :, 1], 2 * bias[:, :, 0])
    assert torch.all(mod.attention_weights.weight == 0)
    query, ref, x, shapes, starts = _module_inputs(mod)
    with pytest.raises(ValueError, match="reference_points"):
        mod(query, ref[:, :, :2], x, shapes, starts)
    with pytest.raises(ValueError, match="spatial"):
        mod(query, ref, x[:, :-1], shapes, starts)
    with pytest.raises(ValueError, match="level_start_index"):
        mod(query, ref, x, shapes, starts + 1)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)
