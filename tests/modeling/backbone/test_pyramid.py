"""The deconv pyramid: the matmul form of ConvTranspose2d(k=2, s=2) equals the module, keys and FLOPs unchanged."""
import pytest
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

from mfuser.modeling.backbone.fusion_backbone import _Pyramid, conv_transpose_2x2


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_transpose_2x2_matches_module(bias, channels_last):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(6, 10, kernel_size=2, stride=2, bias=bias)
    x = torch.randn(2, 6, 3, 5)
    if channels_last:  # the backbone's taps can come as views of (B, h*w, C) tokens
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, out = deconv(x1), conv_transpose_2x2(deconv, x2)
    assert out.shape == (2, 10, 6, 10) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [x1, *deconv.parameters()], g)
    out_grads = torch.autograd.grad(out, [x2, *deconv.parameters()], g)
    for a, b in zip(out_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs", [dict(kernel_size=3, stride=2), dict(kernel_size=2, stride=1), dict(kernel_size=2, stride=2, padding=1),
               dict(kernel_size=2, stride=2, groups=2)]
)
def test_conv_transpose_2x2_rejects_other_deconvs(kwargs):
    with pytest.raises(ValueError, match="kernel_size=2, stride=2"):
        conv_transpose_2x2(nn.ConvTranspose2d(4, 4, **kwargs), torch.randn(1, 4, 3, 3))


def test_conv_transpose_2x2_rejects_bad_input():
    with pytest.raises(ValueError, match=r"x must be \(B, 4, h, w\)"):
        conv_transpose_2x2(nn.ConvTranspose2d(4, 4, 2, stride=2), torch.randn(1, 5, 3, 3))


def _module_forward(p: _Pyramid, taps):
    """The pyramid run through its nn modules (PyTorch's ConvTranspose2d)."""
    return {"res2": p.up4(taps[0]), "res3": p.up2(taps[1]), "res4": taps[2], "res5": p.down2(taps[3])}


def _taps(c=16, h=4, w=6):
    return [torch.randn(2, c, h, w) for _ in range(4)]


@pytest.mark.parametrize("train", [False, True])
def test_pyramid_matches_module_forward(train):
    torch.manual_seed(0)
    p = _Pyramid(16, "BN").train(train)
    with torch.no_grad():  # non-trivial BN statistics and affine
        p.up4[1].running_mean.normal_()
        p.up4[1].running_var.uniform_(0.5, 2.0)
        p.up4[1].weight.normal_()
    taps = _taps()
    ref = _module_forward(p, taps)
    out = p(taps)
    assert list(out) == ["res2", "res3", "res4", "res5"]
    assert out["res2"].shape == (2, 16, 16, 24) and out["res3"].shape == (2, 16, 8, 12)
    assert out["res5"].shape == (2, 16, 2, 3)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-5, atol=1e-5)


def test_pyramid_state_dict_keys_unchanged():
    keys = set(_Pyramid(8, "naiveSyncBN").state_dict())
    assert keys == {
        "up4.0.weight", "up4.0.bias", "up4.1.weight", "up4.1.bias", "up4.1.running_mean", "up4.1.running_var",
        "up4.1.num_batches_tracked", "up4.3.weight", "up4.3.bias", "up2.weight", "up2.bias",
    }


def test_pyramid_flops_same_as_conv_transpose():
    """fvcore counts the matmul form exactly as it counts the transposed convs (tools/benchmark.py relies on it)."""
    torch.manual_seed(0)
    c, h, w = 16, 4, 6
    p = _Pyramid(c, "BN").eval()
    taps = _taps(c, h, w)

    class ModuleForm(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = p

        def forward(self, taps):
            return _module_forward(self.p, taps)

    def count(model):
        flops = FlopCountAnalysis(model, (taps,))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return flops.by_operator(), flops.total()

    ops_new, total_new = count(p)
    ops_ref, total_ref = count(ModuleForm().eval())
    deconv = 2 * c * c * 4  # batch * Cin * Cout * 2 * 2 per input pixel
    expected_deconvs = deconv * (h * w + 2 * h * 2 * w + h * w)  # up4 first, up4 second (on 2x map), up2
    assert ops_new.get("linear") == expected_deconvs
    assert ops_ref.get("conv") == expected_deconvs
    assert total_new == total_ref
