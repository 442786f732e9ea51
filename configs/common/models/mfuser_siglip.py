"""MFuser, DINOv2-L + SigLIP ViT-L/16-384 (DINOv2 kernel resized to /16, 32x32
grid; docs/reference.md, "Equal token grids").

SigLIP has no CLS token, a 1024-d text space, and its score map is calibrated by the checkpoint's
logit scale and bias. Its SentencePiece tokenizer is a local file (`tokenizer_path`), never a hub download.
"""
from detectron2.config import LazyCall as L

from mfuser.modeling.encoders import DINOv2Encoder, SigLIPTextEncoder, SigLIPVisionEncoder

from .mfuser_eva02 import model

# official: DINOv2's 14x14 kernel resized to 16x16 by plain bicubic interpolation
model.backbone.vfm = L(DINOv2Encoder)(patch_size=16, img_size=512, patch_resample="interpolate", pos_resample="dinov2",
                                      weights=None)
model.backbone.vlm = L(SigLIPVisionEncoder)(img_size=512, weights=None)
model.text_encoder = L(SigLIPTextEncoder)(n_ctx=5, tokenizer_path="pretrained/siglip_spiece.model", weights=None)
model.text_enhancer.text_dim = 1024
model.text_enhancer.visual_dim = 1024
model.head.pixel_decoder.text_dim = 1024
model.head.transformer_decoder.text_dim = 1024
