"""The meta-architecture with every VLM family (/14 EVA02, CLS-free SigLIP), bf16 autocast, checkpoints."""

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from mfuser.engine.checkpoint import MFuserCheckpointer
from mfuser.modeling.encoders import (
    CLIPTextEncoder,
    CLIPVisionEncoder,
    DINOv2Encoder,
)
from mfuser.utils.testing import tiny_encoder_kwargs, write_official_checkpoint
from tests.modeling.meta_arch.tiny_families import SMALL, family_cfg, tiny_cfg  # noqa: F401


def batch(num=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
             "sem_seg": torch.randint(0, 19, (size, size), generator=g)} for _ in range(num)]


@pytest.mark.parametrize("family", ["eva02", "siglip"])
def test_train_and_eval_with_each_vlm_family(family, tmp_path):
    torch.manual_seed(0)
    model = instantiate(family_cfg(family, tmp_path).model)
    patch = model.backbone.vfm.patch_size
    assert model.backbone.vlm.num_prefix_tokens == (0 if family == "siglip" else 1)
    model.train()
    with EventStorage():
        losses = model(batch())
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    # a /14 grid is not padded up: 128 px give a 9x9 grid (126 px covered), as 512 px give 36x36
    assert model.covered_size((128, 128)) == (128 // patch * patch,) * 2
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad
    model.eval()
    out = model([{"image": torch.randint(0, 256, (3, 90, 140), dtype=torch.uint8)}])[0]["sem_seg"]
    assert out.shape == (19, 90, 140) and torch.isfinite(out).all()


def test_whole_image_mode_with_odd_token_grids():
    model = instantiate(tiny_cfg().model).eval()
    model.inference_mode = "whole"
    out = model([{"image": torch.randint(0, 256, (3, 200, 264), dtype=torch.uint8)}])[0]["sem_seg"]  # grid 25x33
    assert out.shape == (19, 200, 264) and torch.isfinite(out).all()


def test_bf16_autocast_train_step_and_inference():
    torch.manual_seed(0)
    model = instantiate(tiny_cfg().model)
    model.train()
    with EventStorage(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model([{"image": torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)}])[0]["sem_seg"]
    assert torch.isfinite(out.float()).all()


def loaded_tiny_cfg(tmp_path):
    """Tiny CLIP-family MFuser whose frozen encoders load official-layout files (2 blocks each)."""
    dino = str(tmp_path / "dinov2.pth")
    clip = str(tmp_path / "clip.pt")
    write_official_checkpoint("dinov2", dino, size="tiny")
    write_official_checkpoint("clip", clip, size="tiny")
    cfg = tiny_cfg()
    m = cfg.model
    m.backbone.vfm = L(DINOv2Encoder)(weights=dino, **tiny_encoder_kwargs("dinov2"))
    m.backbone.vlm = L(CLIPVisionEncoder)(weights=clip, **tiny_encoder_kwargs("clip"))
    m.backbone.tap_indices = (0, 0, 1, 1)
    text = tiny_encoder_kwargs("clip", "text")
    m.text_encoder = L(CLIPTextEncoder)(weights=clip, **text)
    dim = text["output_dim"]
    m.text_enhancer.update(text_dim=dim, visual_dim=dim)
    m.head.pixel_decoder.text_dim = dim
    m.head.pixel_decoder.input_shape.channels = 2 * tiny_encoder_kwargs("dinov2")["embed_dim"]
    m.head.transformer_decoder.text_dim = dim
    m.crop_size = (64, 64)
    m.stride = (48, 48)
    return cfg


def test_checkpoints_leave_out_loaded_frozen_weights_and_round_trip_strictly(tmp_path):
    cfg = loaded_tiny_cfg(tmp_path)
    torch.manual_seed(0)
    a = instantiate(cfg.model).eval()
    assert set(a.checkpoint_optional_prefixes) == {"backbone.vfm.", "backbone.vlm.", "text_encoder.tower."}
    MFuserCheckpointer(a, str(tmp_path)).save("model_a")
    saved = torch.load(tmp_path / "model_a.pth", weights_only=False)["model"]
    assert not [k for k in saved if k.startswith(a.checkpoint_optional_prefixes)]
    assert "text_encoder.contexts" in saved and any(k.startswith("backbone.fusers.") for k in saved)

    torch.manual_seed(1)  # other trainable weights; the frozen ones come from the same files
    b = instantiate(cfg.model).eval()
    image = [{"image": torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8)}]
    assert not torch.allclose(a(image)[0]["sem_seg"], b(image)[0]["sem_seg"])
    MFuserCheckpointer(b).load(str(tmp_path / "model_a.pth"))
    torch.testing.assert_close(a(image)[0]["sem_seg"], b(image)[0]["sem_seg"])


def test_randomly_initialised_frozen_encoders_stay_in_checkpoints(tmp_path):
    model = instantiate(tiny_cfg().model)
    assert model.checkpoint_optional_prefixes == ()
    MFuserCheckpointer(model, str(tmp_path)).save("m")
    saved = torch.load(tmp_path / "m.pth", weights_only=False)["model"]
    assert any(k.startswith("backbone.vfm.") for k in saved)
