"""Pixel decoder, transformer decoder and MFuserHead at tiny size: shapes, gradients, overfitting."""
import pytest
import torch
from detectron2.layers import ShapeSpec

from mfuser.modeling.heads import MFuserCriterion, MFuserHead, MFuserPixelDecoder, TextQueryTransformerDecoder

C_IN, DIM, TEXT_DIM, K = 32, 32, 24, 4


def tiny_head(dec_layers=3):
    shapes = {f"res{i}": ShapeSpec(channels=C_IN, stride=2 ** i) for i in range(2, 6)}
    pixel_decoder = MFuserPixelDecoder(
        input_shape=shapes, text_dim=TEXT_DIM, num_text_tokens=K, conv_dim=DIM, mask_dim=DIM,
        num_layers=2, num_heads=4, num_points=2, ffn_dim=64,
    )
    decoder = TextQueryTransformerDecoder(
        in_channels=DIM, text_dim=TEXT_DIM, num_classes=K, hidden_dim=DIM, num_heads=4, dim_feedforward=64,
        dec_layers=dec_layers, mask_dim=DIM,
    )
    return MFuserHead(pixel_decoder=pixel_decoder, transformer_decoder=decoder)


def features_for(B, sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"res{i}": torch.randn(B, C_IN, h, w, generator=g) for i, (h, w) in zip(range(2, 6), sizes)}


GRIDS = {
    "64x96": [(16, 24), (8, 12), (4, 6), (2, 3)],
    "odd": [(17, 23), (9, 12), (5, 6), (3, 3)],  # not exact halvings; odd, non-square
}


@pytest.mark.parametrize("grid", list(GRIDS))
def test_pixel_decoder_shapes(grid):
    torch.manual_seed(0)
    head = tiny_head()
    feats = features_for(2, GRIDS[grid])
    text = torch.randn(2, K, TEXT_DIM)
    mask_features, ms = head.pixel_decoder(feats, text)
    assert mask_features.shape == (2, DIM, *GRIDS[grid][0])
    assert [tuple(x.shape) for x in ms] == [(2, DIM, *GRIDS[grid][i]) for i in (3, 2, 1)]  # 1/32, 1/16, 1/8


@pytest.mark.parametrize("grid", list(GRIDS))
def test_head_output_shapes(grid):
    torch.manual_seed(0)
    head = tiny_head(dec_layers=3)
    out = head(features_for(2, GRIDS[grid]), torch.randn(2, K, TEXT_DIM))
    h4, w4 = GRIDS[grid][0]
    assert out["pred_logits"].shape == (2, K, K + 1)
    assert out["pred_masks"].shape == (2, K, h4, w4)
    assert len(out["aux_outputs"]) == 3  # initial queries + layers 0..1; the last layer is the top level
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, K, K + 1)
        assert aux["pred_masks"].shape == (2, K, h4, w4)
    assert not torch.equal(out["aux_outputs"][0]["pred_masks"], out["pred_masks"])


def test_decoder_layer_count_and_bad_text():
    head = tiny_head(dec_layers=9)
    out = head(features_for(1, GRIDS["64x96"]), torch.randn(1, K, TEXT_DIM))
    assert len(out["aux_outputs"]) == 9  # 10 prediction sets in all
    with pytest.raises(ValueError, match="text"):
        head(features_for(1, GRIDS["64x96"]), torch.randn(1, K + 1, TEXT_DIM))
    with pytest.raises(KeyError, match="res2"):
        head({k: v for k, v in features_for(1, GRIDS["64x96"]).items() if k != "res2"}, torch.randn(1, K, TEXT_DIM))


def test_masked_attention_changes_result_and_text_conditions_queries():
    torch.manual_seed(0)
    head = tiny_head().eval()
    feats = features_for(1, GRIDS["64x96"])
    t1, t2 = torch.randn(1, K, TEXT_DIM), torch.randn(1, K, TEXT_DIM)
    with torch.no_grad():
        o1, o2 = head(feats, t1), head(feats, t2)
    assert not torch.allclose(o1["pred_logits"], o2["pred_logits"])
    # query k depends on text k: permuting the text permutes the initial queries' logits
    dec = head.transformer_decoder
    with torch.no_grad():
        q = dec.query_feat(t1)
        q_perm = dec.query_feat(t1[:, [1, 0, 2, 3]])
    torch.testing.assert_close(q_perm, q[:, [1, 0, 2, 3]])


def _sem_seg(B=2, H=64, W=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    # blocky labels with classes 0..K-2 (class K-1 absent) and an ignore strip
    coarse = torch.randint(0, K - 1, (B, H // 16, W // 16), generator=g)
    sem = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)
    sem[:, :, :8] = 255
    return sem


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    head = tiny_head()
    crit = MFuserCriterion(num_classes=K, num_points=128)
    feats = features_for(2, GRIDS["64x96"])
    text = torch.randn(2, K, TEXT_DIM, requires_grad=True)
    losses = crit(head(feats, text), _sem_seg())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_2"} <= set(losses)
    assert len(losses) == 3 * 4
    sum(losses.values()).backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, no_grad
    assert text.grad is not None and text.grad.abs().sum() > 0


def test_tiny_head_overfits_one_batch():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    head = tiny_head(dec_layers=3)
    crit = MFuserCriterion(num_classes=K, num_points=256)
    feats = features_for(2, GRIDS["64x96"], seed=1)
    text = torch.randn(2, K, TEXT_DIM)
    sem = _sem_seg(seed=1)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    history = []
    for _ in range(60):
        loss = sum(crit(head(feats, text), sem).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.35 * history[0], history


def test_full_size_parameter_counts():
    """The official model (manifests): pixel decoder 12,086,208 (FFN 2048 + encoder post-LayerNorm), head 26,766,292;
    9 decoder layers 14.21 M, rest 0.47 M (CLIP/EVA text 768)."""
    shapes = {f"res{i}": ShapeSpec(channels=2048, stride=2 ** i) for i in range(2, 6)}
    pd = MFuserPixelDecoder(input_shape=shapes, text_dim=768, num_text_tokens=19)
    dec = TextQueryTransformerDecoder(text_dim=768, num_classes=19)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(pd) == 12_086_208
    assert round(count(dec.layers) / 1e6, 2) == 14.21
    assert round((count(dec) - count(dec.layers)) / 1e6, 2) == 0.47
    assert count(MFuserHead(pixel_decoder=pd, transformer_decoder=dec)) == 26_766_292


def test_pre_norm_decoder_and_input_projection():
    torch.manual_seed(0)
    dec = TextQueryTransformerDecoder(in_channels=16, text_dim=TEXT_DIM, num_classes=K, hidden_dim=DIM, num_heads=4,
                                      dim_feedforward=64, dec_layers=2, mask_dim=8, pre_norm=True)
    ms = [torch.randn(1, 16, h, w) for h, w in [(3, 3), (5, 6), (9, 12)]]
    out = dec(ms, torch.randn(1, 8, 17, 23), torch.randn(1, K, TEXT_DIM))
    assert out["pred_masks"].shape == (1, K, 17, 23) and len(out["aux_outputs"]) == 2


def test_sine_position_encoding_values():
    import math

    from mfuser.modeling.heads import PositionEmbeddingSine

    pos = PositionEmbeddingSine(8)(torch.zeros(2, 3, 4, 5))
    assert pos.shape == (2, 16, 4, 5)
    i, j = 2, 3
    torch.testing.assert_close(pos[0, 0, i, j], torch.tensor(math.sin((i + 1) / (4 + 1e-6) * 2 * math.pi)))
    torch.testing.assert_close(pos[0, 9, i, j], torch.tensor(math.cos((j + 1) / (5 + 1e-6) * 2 * math.pi)))


def test_pixel_decoder_encoder_output_is_layer_normed():
    """Official: the encoder ends with a post-LayerNorm whose output feeds the multi-scale memories and the FPN."""
    torch.manual_seed(0)
    pd = tiny_head().pixel_decoder
    assert pd.layers[0].linear1.out_features == 64
    assert MFuserPixelDecoder(input_shape={f"res{i}": ShapeSpec(channels=8, stride=2 ** i) for i in range(2, 6)},
                              text_dim=8, num_text_tokens=2).layers[0].linear1.out_features == 2048  # official width
    with torch.no_grad():
        pd.encoder_norm.weight.fill_(2.0)
        pd.encoder_norm.bias.fill_(0.5)
    _, ms = pd(features_for(1, GRIDS["odd"]), torch.randn(1, K, TEXT_DIM))
    tokens = torch.cat([x.flatten(2) for x in ms], 2)[0]  # (C, S): every token normalised over C, then 2x + 0.5
    torch.testing.assert_close(tokens.mean(0), torch.full((tokens.shape[1],), 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(0, unbiased=False), torch.full((tokens.shape[1],), 4.0), atol=1e-3, rtol=1e-3)
    # without the post-norm (this project's old function): the tokens are not normalised
    pd.encoder_norm = None
    _, ms = pd(features_for(1, GRIDS["odd"]), torch.randn(1, K, TEXT_DIM))
    tokens = torch.cat([x.flatten(2) for x in ms], 2)[0]
    assert (tokens.mean(0) - 0.5).abs().max() > 0.1


# ------------------------------------------------------------------------------------------ attention path
def _module_calls(monkeypatch):
    """nn.MultiheadAttention's own forward, as the layers ran before mfuser.layers.attention."""
    from mfuser.layers.attention import MultiheadAttention

    monkeypatch.setattr(MultiheadAttention, "forward", torch.nn.MultiheadAttention.forward)


@pytest.mark.parametrize("bf16", [False, True])
def test_head_equals_the_module_calls(monkeypatch, bf16):
    """The whole head (both decoders' attentions through mfuser.layers.attention) == the nn.MultiheadAttention
    module calls: fp32 tight, bf16 autocast to bf16 rounding; the same also in eval mode under no_grad."""
    import mfuser.layers.attention as A

    torch.manual_seed(0)
    head = tiny_head()
    feats, text = features_for(2, GRIDS["odd"]), torch.randn(2, K, TEXT_DIM)
    calls = []
    real = A._explicit_attention
    monkeypatch.setattr(A, "_explicit_attention", lambda *args: calls.append(1) or real(*args))
    tol = dict(rtol=5e-2, atol=5e-2) if bf16 else dict(rtol=1e-4, atol=1e-5)
    for train in (True, False):
        head.train(train)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(train):
            ours = head(feats, text)
            with monkeypatch.context() as m:
                _module_calls(m)
                theirs = head(feats, text)
        for key in ("pred_logits", "pred_masks"):
            torch.testing.assert_close(ours[key].float(), theirs[key].float(), **tol)
    assert (len(calls) > 0) == bf16  # bf16 at this size: the explicit form (fp32: PyTorch's op, few keys here)


def test_decoder_layer_with_fully_masked_rows_equals_the_module_calls(monkeypatch):
    """A query row masked everywhere (the decoder itself unmasks such rows first) gives what nn.MultiheadAttention
    gives: attention output 0, i.e. the output projection's bias, with finite gradients."""
    import mfuser.layers.attention as A
    from mfuser.modeling.heads.transformer_decoder import MaskedAttentionDecoderLayer

    torch.manual_seed(0)
    layer = MaskedAttentionDecoderLayer(d_model=32, num_heads=4, dim_feedforward=64)
    with torch.no_grad():
        layer.cross_attn.out_proj.bias.normal_()
    q, qp = torch.randn(2, 5, 32, requires_grad=True), torch.randn(2, 5, 32)
    mem, mp = torch.randn(2, 30, 32, requires_grad=True), torch.randn(2, 30, 32)
    mask = torch.rand(8, 5, 30) > 0.5
    mask[..., 0] = False
    mask[1, 2] = True  # head 1 of image 0, query 2: nothing to attend to
    for explicit in (True, False):
        monkeypatch.setattr(A, "use_explicit_attention", lambda a, b, e=explicit: e)
        ours = layer(q, qp, mem, mp, mask)
        with monkeypatch.context() as m:
            _module_calls(m)
            theirs = layer(q, qp, mem, mp, mask)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(ours.sum(), (q, mem))
        assert all(torch.isfinite(g).all() for g in grads)
