"""MFuser, DINOv2-L/14 + EVA02-CLIP-L/14-336 (native /14, 36x36 grid on a 512 crop;
docs/reference.md, "Equal token grids").

Pretrained files are set by the training configs (configs/mfuser/*.py); here they are None so that
the model builds with random frozen weights (tests, FLOP counts).

Every setting computes (and trains) what the official code does; where this project offers its own
alternative the official value is written out here with the option's name (docs/reference.md lists them).
"""
from detectron2.config import LazyCall as L
from open_clip.constants import OPENAI_DATASET_MEAN

from mfuser.modeling.backbone import MFuserBackbone, pyramid_output_shape
from mfuser.modeling.encoders import DINOv2Encoder, EVA02TextEncoder, EVA02VisionEncoder
from mfuser.modeling.fusion import MTEnhancer
from mfuser.modeling.heads import MFuserCriterion, MFuserHead, MFuserPixelDecoder, TextQueryTransformerDecoder
from mfuser.modeling.meta_arch import MFuser
from mfuser.utils.vocabulary import dataset_class_names

# Vocabulary size of the 19-class Cityscapes label space shared by every built-in dataset. MFuser checks it
# against `class_names` (read from the dataset metadata) and names the mismatch.
NUM_CLASSES = 19

# Colour (RGB, 0-255) the training crops are padded with and the model pads its inputs with. The official pipeline
# pads with 0 after its OpenAI-CLIP normalisation, i.e. with the CLIP mean, for every variant (SigLIP and DINOv2
# streams included). The data mappers derive their pad colour from the same open_clip constant
# (tests/configs/test_model_configs.py checks that the two agree).
PAD_RGB = tuple(255.0 * m for m in OPENAI_DATASET_MEAN)

model = L(MFuser)(
    backbone=L(MFuserBackbone)(
        vfm=L(DINOv2Encoder)(patch_size=14, img_size=512, patch_resample="interpolate", pos_resample="dinov2",
                             weights=None),
        vlm=L(EVA02VisionEncoder)(img_size=512, weights=None),
        tap_indices=(7, 11, 15, 23),
        fusion_projections=False,
        activation_checkpointing=False,
        frozen_encoders_eval=False,  # official: the frozen encoders follow train/eval mode
    ),
    text_encoder=L(EVA02TextEncoder)(n_ctx=8, weights=None),
    text_enhancer=L(MTEnhancer)(text_dim=768, visual_dim=768, width=256, num_blocks=1),
    head=L(MFuserHead)(
        pixel_decoder=L(MFuserPixelDecoder)(
            input_shape=L(pyramid_output_shape)(channels=2048), text_dim=768, num_text_tokens=NUM_CLASSES
        ),
        transformer_decoder=L(TextQueryTransformerDecoder)(text_dim=768, num_classes=NUM_CLASSES),
    ),
    # official: ignore pixels are negatives of every mask in the point-sampled BCE / Dice
    criterion=L(MFuserCriterion)(num_classes=NUM_CLASSES, mask_ignore_as_background=True),
    class_names=L(dataset_class_names)(dataset_name="cityscapes_val"),
    inference_mode="slide",
    crop_size=(512, 512),
    stride=(341, 341),
    # official: a 512 window's scores are resized to the whole window (36x36 tokens cover 504 px); training
    # labels cover the whole crop
    window_score_resize="full",
    score_map_avg_non_ignore=False,  # official: score-map CE averaged over all pixels, ignored ones count 0
    pad_value=PAD_RGB,
)
