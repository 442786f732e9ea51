"""Full-size model configs: trainable parameters equal the official model's exactly (see docs/reference.md,
"Trainable totals"); every training config's model pads its inputs with the colour its train mapper pads crops with."""
import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from tests.conftest import REPO_ROOT

MODELS = os.path.join(REPO_ROOT, "configs", "common", "models")

# name -> the official model's trainable parameters that its forward uses (EVA02 without the unused random_text,
# SigLIP without the unused adapter_proj1/2/3), counted from the official code
OFFICIAL_TRAINABLE = {"clip": 170_059_629, "eva02": 118_631_533, "siglip": 118_959_725}


def build_on_meta(variant):
    cfg = LazyConfig.load(os.path.join(MODELS, f"mfuser_{variant}.py"))
    if variant == "siglip":
        cfg.model.text_encoder.tokenizer_path = None  # weights-only text tower: no tokenizer file needed
    with torch.device("meta"):  # shapes only: counts parameters of the full-size model without 3 GB of RAM
        return instantiate(cfg.model)


@pytest.mark.parametrize("variant", sorted(OFFICIAL_TRAINABLE))
def test_full_size_trainable_parameters_equal_the_official_count(variant):
    model = build_on_meta(variant)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == OFFICIAL_TRAINABLE[variant]
    fusers = model.backbone.fusers
    assert len(fusers) == 24
    assert all(sum(p.numel() for p in f.parameters()) == 1_667_585 for f in fusers)
    # the frozen encoders really are frozen, and only they and the text tower are
    frozen = {n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"backbone.vfm", "backbone.vlm", "text_encoder.tower"}


def test_clip_variant_has_the_per_block_projections_and_eva02_not():
    clip, eva = build_on_meta("clip"), build_on_meta("eva02")
    assert len(clip.backbone.proj_in) == len(clip.backbone.proj_out) == 24
    assert not hasattr(eva.backbone, "proj_in")
    assert clip.backbone.vfm.patch_size == clip.backbone.vlm.patch_size == 16
    assert eva.backbone.vfm.patch_size == eva.backbone.vlm.patch_size == 14


@pytest.mark.parametrize("variant", ["clip", "eva02", "siglip"])
def test_full_size_configs_compute_the_official_function(variant):
    """Every setting where this project offers an alternative is at the official value (docs/reference.md)."""
    cfg = LazyConfig.load(os.path.join(MODELS, f"mfuser_{variant}.py")).model
    assert cfg.backbone.frozen_encoders_eval is False
    assert cfg.criterion.mask_ignore_as_background is True
    assert cfg.window_score_resize == "full" and cfg.score_map_avg_non_ignore is False
    assert cfg.get("score_softmax", False) is False
    assert cfg.backbone.vfm.patch_resample == "interpolate" and cfg.backbone.vfm.pos_resample == "dinov2"
    if variant == "clip":
        assert cfg.backbone.vlm.patch_resample == "interpolate"
        assert cfg.backbone.vlm.double_class_embedding is True and cfg.backbone.vlm.drop_path_rate == 0.1
    model = build_on_meta(variant)
    pd = model.head.pixel_decoder
    assert pd.layers[0].linear1.out_features == 2048 and pd.encoder_norm is not None


TRAIN_CONFIGS = sorted(
    glob.glob(os.path.join(REPO_ROOT, "configs", "mfuser", "*.py"))
    + glob.glob(os.path.join(REPO_ROOT, "configs", "quickstart", "*.py"))
    + glob.glob(os.path.join(REPO_ROOT, "projects", "*", "configs", "*.py"))
)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_model_pads_with_the_training_crops_colour(path):
    """The model's ``pad_value`` (set in configs/common/models/mfuser_eva02.py, the base of every model config) is
    the colour the config's train mapper pads crops with: the CLIP mean, zero after the official normalisation."""
    from mfuser.data.transforms import IMAGE_PAD_RGB, PadToSize

    cfg = LazyConfig.load(path)
    pad_value = tuple(cfg.model.pad_value)
    assert pad_value == pytest.approx(IMAGE_PAD_RGB)
    mapper = cfg.dataloader.train.mapper
    assert mapper.get("image_format", "RGB") == "RGB"
    pads = [a for a in instantiate(mapper.augmentations) if isinstance(a, PadToSize)]
    assert len(pads) == 1 and tuple(pads[0].pad_value) == pytest.approx(pad_value)
