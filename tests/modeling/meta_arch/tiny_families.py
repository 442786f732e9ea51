"""The tiny MFuser config with the VLM of each family (tests only): the same code as the published models."""
import os

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from mfuser.modeling.encoders import (
    DINOv2Encoder,
    EVA02TextEncoder,
    EVA02VisionEncoder,
    SigLIPTextEncoder,
    SigLIPVisionEncoder,
)
from tests.configs.tiny_trees import train_spm_model
from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
SMALL = dict(embed_dim=64, depth=4, num_heads=2, img_size=128)


def tiny_cfg():
    return LazyConfig.load(TINY)


def family_cfg(family, tmp_path, *, tokenizer: bool = True):
    """The tiny config (CLIP family) with the VLM of ``family`` ("clip", "eva02" or "siglip") and DINOv2 at its
    patch size. SigLIP gets a SentencePiece model trained into ``tmp_path``, or none with ``tokenizer=False``
    (enough to build and load weights; encoding class names then raises)."""
    cfg = tiny_cfg()
    m = cfg.model
    if family == "eva02":
        m.backbone.vfm = L(DINOv2Encoder)(patch_size=14, init_values=1.0, **SMALL)
        m.backbone.vlm = L(EVA02VisionEncoder)(patch_size=14, output_dim=64, **SMALL)
        m.text_encoder = L(EVA02TextEncoder)(width=64, layers=2, heads=2, output_dim=64)
        m.backbone.fusion_projections = False
    elif family == "siglip":
        m.backbone.vfm = L(DINOv2Encoder)(patch_size=8, init_values=1.0, **SMALL)
        m.backbone.vlm = L(SigLIPVisionEncoder)(patch_size=8, **SMALL)
        spm = train_spm_model(str(tmp_path / "spiece.model")) if tokenizer else None
        m.text_encoder = L(SigLIPTextEncoder)(tokenizer_path=spm, width=64, layers=2, heads=2, output_dim=64,
                                              vocab_size=40)
        m.backbone.fusion_projections = False
    return cfg
