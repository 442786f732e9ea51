"""Encoder behaviours that follow the published MFuser code, at tiny size
(docs/reference.md, "Options: the official behaviour, and this project's alternatives").

* CLIP: the class token carries ``class_embedding`` twice (``double_class_embedding``, default True).
* CLIP: stochastic depth on the frozen blocks (``drop_path_rate``), drawn per token position as the published
  sequence-first blocks do.
* DINOv2: the runtime position-embedding rule of DINOv2's ``interpolate_pos_encoding`` (``pos_resample="dinov2"``).
* SigLIP text: ``logit_scale`` / ``logit_bias`` are not in the state dict but still come from the pretrained file.
"""
import math

import pytest
import torch

from mfuser.modeling.encoders import CLIPVisionEncoder, DINOv2Encoder, SigLIPTextEncoder
from mfuser.modeling.encoders.checkpoints import read_state_dict
from mfuser.utils.testing import tiny_encoder_kwargs


def tiny_clip(**over):
    return CLIPVisionEncoder(**{**tiny_encoder_kwargs("clip"), **over})


def run_blocks(enc, images):
    grid = enc.grid(images.shape[-2:])
    x = enc.embed(images)
    for i in range(enc.num_blocks):
        x = enc.block(i, x, grid)
    return x


# ------------------------------------------------------------------------------------------ CLIP class embedding
def _ln_pre_input(enc, images):
    seen = {}
    handle = enc.model.ln_pre.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0].clone()))
    try:
        enc.embed(images)
    finally:
        handle.remove()
    return seen["x"]  # (B, 1 + h*w, C) tokens right before ln_pre


@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])  # the built 4x4 grid and a resampled 3x5 one
def test_clip_cls_token_carries_the_class_embedding_twice_by_default(hw):
    enc = tiny_clip().eval()
    assert enc.double_class_embedding is True
    with torch.no_grad():
        enc.model.class_embedding.normal_()  # large enough to tell 1x from 2x
    single = tiny_clip(double_class_embedding=False).eval()
    single.load_state_dict(enc.state_dict())
    images = torch.rand(2, 3, *hw) * 255
    x2, x1 = _ln_pre_input(enc, images), _ln_pre_input(single, images)
    ce = enc.model.class_embedding
    pos0 = enc.model.positional_embedding[0]  # the class position is never resampled
    torch.testing.assert_close(x2[:, 0], (ce + (pos0 + ce)).expand(2, -1), rtol=0, atol=0)
    torch.testing.assert_close(x1[:, 0], (ce + pos0).expand(2, -1), rtol=0, atol=0)
    torch.testing.assert_close(x2[:, 1:], x1[:, 1:], rtol=0, atol=0)  # patch tokens untouched


# ------------------------------------------------------------------------------------------ CLIP drop path
def test_clip_drop_path_rates_follow_linspace():
    enc = tiny_clip(layers=5, drop_path_rate=0.3)
    assert enc.drop_path_rates == [r.item() for r in torch.linspace(0, 0.3, 5)]
    assert enc.drop_path_rates[0] == 0.0 and enc.drop_path_rates[-1] == pytest.approx(0.3)
    assert tiny_clip().drop_path_rates == [0.0, 0.0]
    with pytest.raises(ValueError, match="drop_path_rate"):
        tiny_clip(drop_path_rate=1.0)


def test_clip_block_is_open_clips_block_when_drop_path_is_off():
    """Eval mode (any rate) and train mode at rate 0: open_clip's own block in the same mode, up to float rounding
    (the attention runs through mfuser.layers.attention from the block's parameters; open_clip's
    ``nn.MultiheadAttention`` takes a fused path in eval mode)."""
    ref = tiny_clip().eval()
    images = torch.rand(2, 3, 64, 64) * 255
    grid = ref.grid((64, 64))
    x = ref.embed(images)
    for rate, train in ((0.0, False), (0.0, True), (0.5, False)):
        enc = tiny_clip(drop_path_rate=rate).train(train)
        enc.load_state_dict(ref.state_dict())
        for i in range(enc.num_blocks):
            blk = enc.model.transformer.resblocks[i]
            torch.testing.assert_close(enc.block(i, x, grid), blk(x), rtol=1e-5, atol=1e-6)
    enc = tiny_clip(drop_path_rate=0.0).train()  # train at rate 0 == eval, through the whole tower
    enc.load_state_dict(ref.state_dict())
    torch.testing.assert_close(run_blocks(enc, images), run_blocks(ref, images), rtol=1e-5, atol=1e-5)


def test_clip_drop_path_fires_in_train_mode_per_token_position():
    """Rate 0.9 on block 1 (linspace(0, 0.9, 2)): a token position whose two branches are both dropped keeps its
    input exactly. The published blocks see (L, B, C) tokens, so a draw is per position and shared by the batch."""
    enc = tiny_clip(drop_path_rate=0.9).train()
    images = torch.rand(1, 3, 128, 128) * 255  # 8x8 grid: 65 positions
    x = enc.embed(images).expand(2, -1, -1).contiguous()  # two identical images
    grid = enc.grid((128, 128))
    outs = [enc.block(1, x, grid) for _ in range(3)]
    for y in outs:
        torch.testing.assert_close(y[0], y[1], rtol=0, atol=0)  # same draw for both images of the batch
        kept = (y[0] == x[0]).all(dim=-1)  # positions with both branches dropped
        assert 0 < int(kept.sum()) < kept.numel()  # per position, not per sample
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])  # run to run
    # rate 0 on block 0; no drop in eval mode (float rounding: see the test above)
    torch.testing.assert_close(enc.block(0, x, grid), enc.model.transformer.resblocks[0](x), rtol=1e-5, atol=1e-6)
    enc.eval()
    torch.testing.assert_close(enc.block(1, x, grid), enc.model.transformer.resblocks[1](x), rtol=1e-5, atol=1e-6)


def test_clip_drop_path_mask_statistics():
    """One branch: entries 0 or 1 / keep, constant over batch and channels, keep fraction ~ 1 - rate."""
    enc = tiny_clip(drop_path_rate=0.4).train()
    ones = torch.ones(3, 4000, 8)
    y = enc._drop_path(ones, 0.4)
    assert torch.equal(y, y[:1, :, :1].expand_as(y))
    vals = torch.unique(y).tolist()
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(1 / 0.6)
    assert (y[0, :, 0] > 0).float().mean().item() == pytest.approx(0.6, abs=0.04)
    assert torch.equal(enc.eval()._drop_path(ones, 0.4), ones)


# ------------------------------------------------------------------------------------------ DINOv2 runtime positions
def _cubic_matrix(n_in: int, n_out: int, src_step: float) -> torch.Tensor:
    """(n_out, n_in) 1-D bicubic weights (a = -0.75, taps clamped at the border) sampling output i at source
    coordinate (i + 0.5) * src_step - 0.5, as PyTorch's bicubic mode without align_corners (float64)."""
    a = -0.75

    def k(d):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
        if d < 2:
            return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
        return 0.0

    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = (i + 0.5) * src_step - 0.5
        i0 = math.floor(src)
        t = src - i0
        for tap in (-1, 0, 1, 2):
            m[i, min(max(i0 + tap, 0), n_in - 1)] += k(t - tap)
    return m


def _restated(pos: torch.Tensor, n: int, out_hw, src_steps) -> torch.Tensor:
    """(1, 1 + n*n, C) -> (1, 1 + h*w, C) by separable bicubic sampling with the given source steps (H, W)."""
    h, w = out_hw
    C = pos.shape[-1]
    grid = pos[0, 1:].double().reshape(n, n, C)
    mh, mw = _cubic_matrix(n, h, src_steps[0]), _cubic_matrix(n, w, src_steps[1])
    out = torch.einsum("hi,ijc,wj->hwc", mh, grid, mw).reshape(1, h * w, C)
    return torch.cat([pos[:, :1].double(), out], dim=1)


def _tiny_dino(built: int, patch: int, **over):
    enc = DINOv2Encoder(embed_dim=16, depth=1, num_heads=2, patch_size=patch, img_size=built * patch, **over)
    with torch.no_grad():
        enc.model.pos_embed.normal_()
    return enc


@pytest.mark.parametrize("built,patch,out_hw", [(32, 16, (32, 64)), (36, 14, (73, 146))])
def test_dinov2_runtime_pos_rule_matches_the_official_scale_factor(built, patch, out_hw):
    enc = _tiny_dino(built, patch)
    assert enc.pos_resample == "dinov2"
    h, w = out_hw
    image_hw = (h * patch, w * patch)
    got = enc.pos_for_input(out_hw, image_hw)
    # DINOv2: scale_factor ((h + 0.1) / n, (w + 0.1) / n) -> PyTorch samples at (i + 0.5) / scale - 0.5
    want = _restated(enc.model.pos_embed, built, out_hw, (built / (h + 0.1), built / (w + 0.1)))
    assert got.dtype == torch.float32 and got.shape == (1, 1 + h * w, 16)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=5e-5)  # float32 kernel
    # the size rule samples at (i + 0.5) * n / h - 0.5 (the re-statement checks itself on it) and differs
    size = _tiny_dino(built, patch, pos_resample="size")
    size.load_state_dict(enc.state_dict())
    got_size = size.pos_for_input(out_hw, image_hw)
    torch.testing.assert_close(got_size.double(), _restated(enc.model.pos_embed, built, out_hw, (built / h, built / w)),
                               rtol=0, atol=5e-5)
    if out_hw == (32, 64):
        assert (got - got_size).abs().max() > 1e-2


def test_dinov2_runtime_pos_rule_early_exit_is_on_token_count_and_square_pixels():
    enc = _tiny_dino(32, 16)
    pos = enc.model.pos_embed
    assert enc.pos_for_input((32, 32), (512, 512)) is pos  # built grid, square image: stored embedding as is
    assert enc.pos_for_input((32, 32), (520, 520)) is pos  # 520 // 16 = 32 as well
    # same grid but a non-square image: DINOv2 still resamples, by 32.1 / 32
    got = enc.pos_for_input((32, 32), (512, 520))
    torch.testing.assert_close(got.double(), _restated(pos, 32, (32, 32), (32 / 32.1, 32 / 32.1)), rtol=0, atol=5e-5)
    assert not torch.equal(got, pos)
    # "size" keeps the stored embedding whenever the grid is the built one
    size = _tiny_dino(32, 16, pos_resample="size")
    assert size.pos_for_input((32, 32), (512, 520)) is size.model.pos_embed
    with pytest.raises(ValueError, match="pos_resample"):
        _tiny_dino(4, 16, pos_resample="bilinear")


def test_dinov2_embed_uses_the_runtime_pos_rule():
    enc = _tiny_dino(32, 16).eval()
    size = _tiny_dino(32, 16, pos_resample="size").eval()
    size.load_state_dict(enc.state_dict())
    images = torch.rand(1, 3, 512, 1024) * 255
    diff = enc.embed(images) - size.embed(images)
    want = enc.pos_for_input((32, 64), (512, 1024)) - size.pos_for_input((32, 64), (512, 1024))
    torch.testing.assert_close(diff, want, rtol=0, atol=1e-5)
    assert want.abs().max() > 1e-2


# ------------------------------------------------------------------------------------------ SigLIP text calibration
def test_siglip_logit_buffers_are_not_in_the_state_dict_but_load_from_the_file(tiny_files, spm_model):
    kw = tiny_encoder_kwargs("siglip", "text")
    enc = SigLIPTextEncoder(tokenizer_path=spm_model, **kw)
    assert not any("logit" in k for k in enc.state_dict())
    assert {"logit_scale", "logit_bias"} <= set(dict(enc.named_buffers()))  # still buffers (move with .to())
    assert enc.logit_scale.item() == pytest.approx(math.log(10.0)) and enc.logit_bias.item() == -10.0
    with torch.no_grad():  # values the file must overwrite (the tiny file holds SigLIP's log 10 / -10)
        enc.logit_scale.fill_(0.5)
        enc.logit_bias.fill_(3.0)
    enc.load_official(tiny_files["siglip"])
    sd, _ = read_state_dict(tiny_files["siglip"])
    assert enc.logit_scale.item() == pytest.approx(sd["logit_scale"].item(), rel=1e-6)
    assert enc.logit_bias.item() == pytest.approx(sd["logit_bias"].item(), rel=1e-6)
    # a checkpoint without them (as the published MFuser's) loads strictly and keeps the buffers' values
    with torch.no_grad():
        enc.logit_bias.fill_(3.0)
    enc.load_state_dict(SigLIPTextEncoder(tokenizer_path=spm_model, **kw).state_dict(), strict=True)
    assert enc.logit_bias.item() == 3.0
