"""mfuser.layers.attention: the explicit form equals PyTorch's op, the size / dtype rule, nn.MultiheadAttention and
timm Attention run from their own parameters, FLOP counts."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from torch import nn

import mfuser.layers.attention as A
from mfuser.utils.flops import count_flops

BF16 = dict(rtol=2e-2, atol=2e-2)
FP32 = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def force(monkeypatch, explicit: bool):
    monkeypatch.setattr(A, "use_explicit_attention", lambda q, k: explicit)


def qkv(b=2, h=2, lq=7, lk=5, d=8, dv=None):
    return (torch.randn(b, h, lq, d, requires_grad=True), torch.randn(b, h, lk, d, requires_grad=True),
            torch.randn(b, h, lk, dv or d, requires_grad=True))


def grads(out, *inputs):
    """d(out . g)/d(inputs) for a fixed random g (the same for every call with this output shape)."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad(out.float(), inputs, g, retain_graph=True)


def masks(b=2, h=2, lq=7, lk=5):
    keep = torch.rand(b, h, lq, lk) > 0.4
    keep[..., 0] = True  # no fully masked row here
    bias = torch.randn(b, 1, lq, lk)
    dead = keep.clone()
    dead[0, 1, 3] = False  # one query row with no key left
    dead[1, :, 0] = False
    dead_f = torch.zeros(lq, lk).masked_fill(~dead[0, 0], float("-inf"))
    dead_f[2] = float("-inf")
    return {"none": None, "bool": keep, "bool 2d": keep[0, 0], "float": bias, "bool dead rows": dead,
            "float dead rows": dead_f}


@pytest.mark.parametrize("mask", list(masks()))
def test_explicit_equals_torch_fp32_values_and_gradients(monkeypatch, mask):
    m = masks()[mask]
    q, k, v = qkv(dv=6)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    force(monkeypatch, True)
    out = A.scaled_dot_product_attention(q, k, v, attn_mask=m)
    torch.testing.assert_close(out, ref, **FP32)
    for a, b in zip(grads(out, q, k, v), grads(ref, q, k, v)):
        torch.testing.assert_close(a, b, **FP32)
    if mask == "bool dead rows":  # as PyTorch: zeros for a query row without keys, finite gradients
        assert out[0, 1, 3].abs().max() == 0 and out[1, :, 0].abs().max() == 0
    if mask == "float dead rows":
        assert out[:, :, 2].abs().max() == 0
    assert all(torch.isfinite(g).all() for g in grads(out, q, k, v))


@pytest.mark.parametrize("mask", ["none", "bool", "float", "bool dead rows"])
def test_explicit_equals_torch_under_bf16_autocast(monkeypatch, mask):
    """Matmuls in bf16, softmax in float32 (autocast's CPU policy): output bf16 as PyTorch's, values to bf16
    rounding; against a float64 reference within 2.5x PyTorch's own error (bf16 scores, see the module)."""
    m = masks(2, 2, 40, 33)[mask]
    q, k, v = torch.randn(2, 2, 40, 16) * 1.5, torch.randn(2, 2, 33, 16) * 1.5, torch.randn(2, 2, 33, 16)
    m64 = m.double() if m is not None and m.is_floating_point() else m
    ref64 = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=m64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        force(monkeypatch, True)
        out = A.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), **BF16)
    err, ref_err = ((x.double() - ref64).norm() / ref64.norm() for x in (out, ref))
    assert err < 2.5 * ref_err


def test_softmax_is_float32_under_autocast(monkeypatch):
    """Large scores: a bf16 softmax would lose the small weights; the explicit form keeps them (float32)."""
    seen = []
    real = torch.softmax

    def spy(x, dim, dtype=None):
        out = real(x, dim, dtype=dtype)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(A.torch, "softmax", spy)
    force(monkeypatch, True)
    q, k, v = qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        A.scaled_dot_product_attention(q, k, v)
    assert seen == [torch.float32]


def test_rule_follows_dtype_size_and_device():
    def t(*shape):
        return torch.empty(shape)

    use = A.use_explicit_attention
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert use(t(4, 2, 257, 32), t(4, 2, 257, 32))  # tiny ViT self-attention
        assert use(t(4, 4, 1344, 16), t(4, 4, 19, 16))  # tiny pixel decoder -> text
        assert use(t(4, 4, 19, 16), t(4, 4, 1024, 16))  # tiny masked cross-attention
        assert use(t(1, 8, 5376, 32), t(1, 8, 19, 32))  # full-size pixel decoder -> text
        assert not use(t(1, 16, 1297, 64), t(1, 16, 1297, 64))  # full-size ViT-L/14: flash
        assert not use(t(4, 4, 1344, 16), t(4, 4, 128, 16))  # 2.75M scores at D = 16: over the cap
    assert use(t(2, 2, 8, 8).bfloat16(), t(2, 2, 8, 8).bfloat16())  # bf16 tensors without autocast
    assert not use(t(4, 2, 257, 32), t(4, 2, 257, 32))  # float32 self-attention: flash
    assert not use(t(4, 4, 19, 16), t(4, 4, 1024, 16))
    assert use(t(4, 4, 1344, 16), t(4, 4, 19, 16))  # float32, few keys and many queries
    assert not use(t(4, 4, 1344, 16).to("meta"), t(4, 4, 19, 16).to("meta"))  # not a CPU tensor

    traced = []

    def f(q, k):
        traced.append(use(q, k))
        return q

    torch.jit.trace(f, (t(4, 4, 1344, 16), t(4, 4, 19, 16)), check_trace=False)
    assert traced == [False]  # traced graphs (FLOP counts, exports) keep PyTorch's single op


def test_dispatch_uses_the_rule(monkeypatch):
    calls = []
    monkeypatch.setattr(A, "_explicit_attention", lambda *a: calls.append("explicit") or a[0])
    monkeypatch.setattr(A.F, "scaled_dot_product_attention", lambda *a, **k: calls.append("torch") or a[0])
    q, k, v = (torch.randn(4, 4, n, 16) for n in (1344, 19, 19))
    A.scaled_dot_product_attention(q, k, v)
    A.scaled_dot_product_attention(k, q, q)
    assert calls == ["explicit", "torch"]


# ------------------------------------------------------------------------------------------ nn.MultiheadAttention
def mha_pair(e=16, h=4, **kw):
    mha = nn.MultiheadAttention(e, h, batch_first=True, **kw)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    return mha


def call_forms(mha, q, k, v, mask):
    new = A.multi_head_attention(mha, q, k, v, mask)
    old = mha(q, k, v, attn_mask=mask, need_weights=False)[0]
    return new, old


@pytest.mark.parametrize("explicit", [True, False])
@pytest.mark.parametrize("sharing", ["qkv", "qk", "kv", "none"])
@pytest.mark.parametrize("mask", ["none", "bool 3d", "bool 2d", "float 3d", "bool 3d dead rows"])
def test_multi_head_attention_equals_the_module(monkeypatch, explicit, sharing, mask):
    force(monkeypatch, explicit)
    B, H, Lq, E = 2, 4, 6, 16
    mha = mha_pair(E, H)
    x = torch.randn(B, Lq, E, requires_grad=True)
    Lk = Lq if sharing in ("qkv", "qk") else 9
    y = torch.randn(B, Lk, E, requires_grad=True)
    z = torch.randn(B, Lk, E, requires_grad=True)
    q, k, v = {"qkv": (x, x, x), "qk": (x, x, z), "kv": (x, y, y), "none": (x, y, z)}[sharing]
    blocked = torch.rand(B * H, Lq, Lk) > 0.6  # True = not attended (nn.MultiheadAttention)
    blocked[..., 0] = False
    dead = blocked.clone()
    dead[3, 2] = True  # a query row of head 3 of image 0 with no key: nn.MultiheadAttention gives bias-only output
    m = {"none": None, "bool 3d": blocked, "bool 2d": blocked[0], "float 3d": torch.randn(B * H, Lq, Lk),
         "bool 3d dead rows": dead}[mask]
    new, old = call_forms(mha, q, k, v, m)
    torch.testing.assert_close(new, old, **FP32)
    params = list(mha.parameters())
    inputs = [t for t in (x, y, z) if any(t is s for s in (q, k, v))]
    for a, b in zip(grads(new, *inputs, *params), grads(old, *inputs, *params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_multi_head_attention_eval_and_bf16():
    """Eval mode under no_grad (nn.MultiheadAttention's fused fast path) and bf16 autocast."""
    mha = mha_pair().eval()
    x = torch.randn(2, 300, 16)
    with torch.no_grad():
        torch.testing.assert_close(*call_forms(mha, x, x, x, None), rtol=1e-4, atol=1e-5)
    mem = torch.randn(2, 40, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new, old = call_forms(mha.train(), x, mem, mem, None)
    assert new.dtype == old.dtype == torch.bfloat16
    torch.testing.assert_close(new.float(), old.float(), **BF16)


def test_multi_head_attention_other_layouts_and_bad_masks():
    mha = nn.MultiheadAttention(16, 4, kdim=8, vdim=8, batch_first=True)  # separate projections: module call
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 3, 8)
    torch.testing.assert_close(A.multi_head_attention(mha, q, kv, kv), mha(q, kv, kv, need_weights=False)[0])
    seq_first = mha_pair()
    seq_first.batch_first = False  # the helper takes batch-first tensors whatever the flag says
    x = torch.randn(2, 5, 16)
    ref = seq_first(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
    torch.testing.assert_close(A.multi_head_attention(seq_first, x, x, x), ref, **FP32)
    with pytest.raises(ValueError, match=r"attn_mask must be \(8, 5, 5\) or \(5, 5\)"):
        A.multi_head_attention(mha_pair(), x, x, x, torch.zeros(2, 5, 5, dtype=torch.bool))


def test_multi_head_attention_projects_batch_first_without_weight_copies():
    """The in-projection of a frozen weight is one matrix product on the contiguous (B * L, E) tokens; torch's
    module projects the transposed (L, B, E) view, which torch.matmul expands into a batched product with a copy
    of the (E, 3E) weight per token."""
    mha = mha_pair()
    for p in mha.parameters():
        p.requires_grad_(False)  # frozen, as the CLIP tower
    x = torch.randn(2, 30, 16)

    def products(fn):
        with torch.profiler.profile(record_shapes=True) as prof:
            fn()
        return [(e.key, e.input_shapes) for e in prof.key_averages(group_by_input_shape=True)
                if e.key in ("aten::bmm", "aten::addmm", "aten::mm")]

    old = products(lambda: mha(x, x, x, need_weights=False))
    new = products(lambda: A.multi_head_attention(mha, x, x, x))
    assert ("aten::bmm", [[30, 2, 16], [30, 16, 48]]) in old
    assert not any(op == "aten::bmm" and shapes[1][-2:] == [16, 48] for op, shapes in new)
    assert ("aten::addmm", [[48], [60, 16], [16, 48], [], []]) in new


def test_module_class_is_a_drop_in_nn_multihead_attention():
    """MultiheadAttention: nn.MultiheadAttention's parameters, keys and initial values (same RNG use); its
    need_weights=False batch-first calls give the parent's output; other calls are the parent's."""
    torch.manual_seed(3)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    torch.manual_seed(3)
    ours = A.MultiheadAttention(16, 4, batch_first=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(8, 5, 7) > 0.5
    out, weights = ours(q, kv, kv, attn_mask=mask, need_weights=False)
    assert weights is None
    torch.testing.assert_close(out, ref(q, kv, kv, attn_mask=mask, need_weights=False)[0], **FP32)
    for kw in ({"need_weights": True}, {"key_padding_mask": torch.rand(2, 7) > 0.7}):
        for a, b in zip(ours(q, kv, kv, **kw), ref(q, kv, kv, **kw)):
            torch.testing.assert_close(a, b)
    converted = A.MultiheadAttention.convert(ref)
    assert converted is ref and type(ref) is A.MultiheadAttention
    for clone in (copy.deepcopy(ref), pickle.loads(pickle.dumps(ref))):
        assert type(clone) is A.MultiheadAttention
        torch.testing.assert_close(clone(q, kv, kv, need_weights=False)[0], ours(q, kv, kv, need_weights=False)[0])
    with pytest.raises(TypeError, match="expected an nn.MultiheadAttention"):
        A.MultiheadAttention.convert(nn.Linear(2, 2))


def test_timm_attention_class_builds_into_timm_vit():
    """ViTAttention as timm's attn_layer: the ViT's keys and initial values unchanged; a masked call is timm's."""
    from timm.models.vision_transformer import VisionTransformer

    kw = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=0)
    torch.manual_seed(0)
    ref = VisionTransformer(**kw)
    torch.manual_seed(0)
    ours = VisionTransformer(**kw, attn_layer=A.ViTAttention)
    assert type(ours.blocks[0].attn) is A.ViTAttention
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x), **FP32)
    tokens, mask = torch.randn(2, 5, 32), torch.rand(5, 5) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(ours.blocks[0].attn(tokens, attn_mask=mask), ref.blocks[0].attn(tokens, attn_mask=mask))


# ------------------------------------------------------------------------------------------ timm Attention
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kw", [{}, {"qk_norm": True, "scale_norm": True, "norm_layer": nn.LayerNorm},
                                {"gated": True}])
def test_vit_attention_equals_timms_module(monkeypatch, fused, kw):
    attn = TimmAttention(32, num_heads=4, qkv_bias=True, **kw)
    attn.fused_attn = fused
    x = torch.randn(2, 17, 32, requires_grad=True)
    for explicit in (True, False):
        force(monkeypatch, explicit)
        new, old = A.vit_attention(attn, x), attn(x)
        torch.testing.assert_close(new, old, **FP32)
        for a, b in zip(grads(new, x, *attn.parameters()), grads(old, x, *attn.parameters())):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ FLOP counting
class _MHA(nn.Module):
    def __init__(self, ours: bool):
        super().__init__()
        self.attn = mha_pair(32, 4)
        self.ours = ours

    def forward(self, x, mem):
        if self.ours:
            return A.multi_head_attention(self.attn, x, mem, mem)
        return self.attn(x, mem, mem, need_weights=False)[0]


def test_flops_equal_to_the_module_and_to_the_matmuls():
    """Traced (fvcore) the helper counts what nn.MultiheadAttention counts; the explicit form's matmuls count the
    same multiply-adds as the attention op's handle."""
    x, mem = torch.randn(2, 300, 32), torch.randn(2, 19, 32)
    ours, _, _ = count_flops(_MHA(True).eval(), (x, mem))
    theirs, _, _ = count_flops(_MHA(False).eval(), (x, mem))
    assert ours == theirs == 2 * (300 * 32 * 32 * 2 + 19 * 32 * 32 * 2 + 300 * 19 * 32 * 2)

    class Explicit(nn.Module):
        def forward(self, q, k, v):
            return A._explicit_attention(q, k, v, None, 0.0)

    q, k, v = torch.randn(2, 4, 300, 8), torch.randn(2, 4, 19, 8), torch.randn(2, 4, 19, 8)
    total, _, _ = count_flops(Explicit(), (q, k, v))
    assert total == 2 * 4 * 300 * 19 * (8 + 8)
