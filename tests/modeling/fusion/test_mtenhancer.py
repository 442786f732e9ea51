"""MTEnhancer: parameter count, shapes, gamma init, the hybrid step's wiring, bad input."""
import pytest
import torch

from mfuser.modeling.fusion import MTEnhancer, MVFuser


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_matches_reference():
    m = MTEnhancer(768, 768)
    assert n_params(m) - m.gamma.numel() == 1_494_401  # the reference's "1.49 M"
    assert n_params(m) == 1_495_169
    assert n_params(m.decoder[0].cross_attn) == 109_697
    s = MTEnhancer(1024, 1024)
    assert n_params(s) - s.gamma.numel() == 1_692_289  # SigLIP variant, "1.69 M"


def test_gamma_init_and_reference_init():
    m = MTEnhancer(32, 48, width=32)
    assert torch.all(m.gamma == 1e-4)
    assert torch.all(m.decoder[0].cross_attn.dt_proj.bias == 0)  # the reference re-initialises every Linear
    assert m.decoder[0].cross_attn.in_proj.weight.std() < 0.03
    mamba_init = MTEnhancer(32, 48, width=32, reference_init=False, gamma_init=0.5)
    assert torch.all(mamba_init.gamma == 0.5)
    assert mamba_init.decoder[0].cross_attn.dt_proj.bias.abs().min() > 0


@pytest.mark.parametrize("hw", [1024, 1296])  # CLIP/SigLIP and EVA visual token grids (+ the global token)
def test_shapes_and_near_identity(hw):
    torch.manual_seed(0)
    m = MTEnhancer(32, 48, width=32, num_heads=4).eval()
    text = torch.randn(19, 32)
    visual = torch.randn(2, 1 + hw, 48)
    out = m(text, visual)
    assert out.shape == (2, 19, 32)
    torch.testing.assert_close(out, text.expand(2, -1, -1) + m.gamma * m.delta(text.expand(2, -1, -1), visual))
    assert (out - text).abs().max() < 1e-3 * text.abs().max()
    batched = m(text.expand(2, -1, -1).clone(), visual)
    torch.testing.assert_close(batched, out)


def test_visual_reaches_text_and_gradients_flow():
    torch.manual_seed(0)
    # Mamba init (slow decays): with the reference init (dt ~ 0.69, weights std 0.02, scale 1e-3) the visual
    # influence on the text at init is ~1e-8 relative, below fp32 resolution
    m = MTEnhancer(16, 24, width=16, num_heads=2, num_blocks=2, reference_init=False)
    assert len(m.decoder) == 2
    text, visual = torch.randn(2, 5, 16), torch.randn(2, 9, 24, requires_grad=True)
    m.eval()
    with torch.no_grad():
        v2 = visual.clone()
        v2[:, 3] += torch.randn(24)  # not a constant shift: the LayerNorm would remove it
        assert (m.delta(text, v2) - m.delta(text, visual)).abs().max() > 0
    m.train()
    m(text, visual).sum().backward()
    assert visual.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None, name


def test_hybrid_step_adds_both_text_copies():
    """Block output = x + sa + upd[:K] + upd[-K:] + mlp: checked by replacing the MVFuser with a spy."""
    torch.manual_seed(0)
    m = MTEnhancer(16, 24, width=16, num_heads=2).eval()
    block = m.decoder[0]
    seen = {}

    class Spy(MVFuser):
        def forward(self, x):
            seen["x"] = x
            out = torch.zeros_like(x)
            out[:, :3] = 1.0  # leading text copy
            out[:, -3:] = 2.0  # trailing text copy
            out[:, 3:-3] = 100.0  # visual part must be dropped
            return out

    block.cross_attn = Spy(16)
    x, mem = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    out = block(x, mem)
    assert seen["x"].shape == (2, 3 + 7 + 3, 16)
    torch.testing.assert_close(seen["x"][:, 3:-3], mem)
    x1 = x + block.self_attn(block.norm1(x))
    torch.testing.assert_close(seen["x"][:, :3], block.norm2(x1))
    x2 = x1 + 3.0
    torch.testing.assert_close(out, x2 + block.mlp(block.norm3(x2)))


def test_bad_input():
    m = MTEnhancer(16, 24, width=16, num_heads=2)
    with pytest.raises(ValueError, match="visual must be"):
        m(torch.randn(5, 16), torch.randn(2, 9, 16))
    with pytest.raises(ValueError, match="text must be"):
        m(torch.randn(5, 8), torch.randn(2, 9, 24))
    with pytest.raises(ValueError, match="text must be"):
        m(torch.randn(3, 5, 16), torch.randn(2, 9, 24))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MTEnhancer(16, 24, width=18, num_heads=4)


@pytest.mark.parametrize("bf16", [False, True])
def test_self_attention_equals_pytorch_op(monkeypatch, bf16):
    """The class tokens' self-attention through mfuser.layers.attention == F.scaled_dot_product_attention (fp32
    tight, bf16 autocast to bf16 rounding), in training mode with gradients."""
    import torch.nn.functional as F

    import mfuser.layers.attention as A
    import mfuser.modeling.fusion.mtenhancer as mte

    torch.manual_seed(0)
    m = MTEnhancer(32, 48, width=32, num_heads=4, dropout=0.0, gamma_init=1.0)
    text, visual = torch.randn(2, 19, 32, requires_grad=True), torch.randn(2, 17, 48)
    calls = []
    real = A._explicit_attention
    monkeypatch.setattr(A, "_explicit_attention", lambda *args: calls.append(1) or real(*args))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ours = m(text, visual)
        with monkeypatch.context() as patch:
            patch.setattr(mte, "scaled_dot_product_attention", F.scaled_dot_product_attention)
            theirs = m(text, visual)
    tol = dict(rtol=3e-2, atol=3e-2) if bf16 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.float(), theirs.float(), **tol)
    g_ours, g_theirs = (torch.autograd.grad(o.float().sum(), text)[0] for o in (ours, theirs))
    torch.testing.assert_close(g_ours, g_theirs, **tol)
    assert (len(calls) == 1) == bf16  # 19 tokens: explicit in bf16, PyTorch's op in fp32
