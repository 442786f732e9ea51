"""A tiny MFuser (DINOv2 + CLIP families) from the same code as the full-size model: only sizes differ.

Randomly initialised frozen encoders (no weights can be downloaded in tests / the CPU quickstart),
4 blocks tapped at 0..3, width 64, patch 8, 128-pixel crops, a 2-layer pixel decoder and a 3-layer
transformer decoder. Used by the tests and the quickstart.
"""
from detectron2.config import LazyCall as L

from mfuser.modeling.backbone import pyramid_output_shape
from mfuser.modeling.encoders import CLIPTextEncoder, CLIPVisionEncoder, DINOv2Encoder

from .mfuser_clip import model

WIDTH, DEPTH, HEADS, PATCH, CROP, TEXT_DIM = 64, 4, 2, 8, 128, 64

model.backbone.vfm = L(DINOv2Encoder)(
    embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=CROP, init_values=1.0, weights=None
)
model.backbone.vlm = L(CLIPVisionEncoder)(
    width=WIDTH, layers=DEPTH, heads=HEADS, patch_size=PATCH, img_size=CROP, output_dim=TEXT_DIM, weights=None
)
model.backbone.tap_indices = (0, 1, 2, 3)
model.text_encoder = L(CLIPTextEncoder)(width=WIDTH, layers=2, heads=HEADS, output_dim=TEXT_DIM, n_ctx=5, weights=None)
model.text_enhancer.update(text_dim=TEXT_DIM, visual_dim=TEXT_DIM, width=32, num_heads=4)
model.head.pixel_decoder.update(
    input_shape=L(pyramid_output_shape)(channels=2 * WIDTH),
    text_dim=TEXT_DIM,
    conv_dim=64,
    mask_dim=64,
    num_layers=2,
    num_heads=4,
    num_points=4,
    ffn_dim=128,
)
model.head.transformer_decoder.update(
    in_channels=64, text_dim=TEXT_DIM, hidden_dim=64, num_heads=4, dim_feedforward=128, dec_layers=3, mask_dim=64
)
model.criterion.num_points = 2048
model.crop_size = (CROP, CROP)
model.stride = (85, 85)
