"""MFuser, DINOv2-L + OpenAI CLIP ViT-L/14-336 (both kernels resized to /16, 32x32
grid; docs/reference.md, "Equal token grids").

The CLIP variant adds per-block Linear projections on the DINOv2 side of every fuser and one on the final
DINOv2 tokens (docs/reference.md, "Fusion", "Pyramid and final embedding").
"""
from detectron2.config import LazyCall as L

from mfuser.modeling.encoders import CLIPTextEncoder, CLIPVisionEncoder, DINOv2Encoder

from .mfuser_eva02 import model

# official: 14x14 kernels resized to 16x16 by plain interpolation (bicubic DINOv2, bilinear CLIP); CLIP's CLS token
# gets its class embedding twice; stochastic depth 0.1 on the frozen CLIP blocks while training
model.backbone.vfm = L(DINOv2Encoder)(patch_size=16, img_size=512, patch_resample="interpolate", pos_resample="dinov2",
                                      weights=None)
model.backbone.vlm = L(CLIPVisionEncoder)(patch_size=16, img_size=512, patch_resample="interpolate",
                                          double_class_embedding=True, drop_path_rate=0.1, weights=None)
model.backbone.fusion_projections = True
model.text_encoder = L(CLIPTextEncoder)(n_ctx=5, weights=None)
