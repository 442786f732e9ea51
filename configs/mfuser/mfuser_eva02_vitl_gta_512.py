"""MFuser, DINOv2-L + EVA02-CLIP-L/14-336,
trained on GTA5 (512x512 crops, batch 2 per GPU, 20k iterations),
evaluated on Cityscapes val, BDD100K val, Mapillary val.
Paper (docs/reference.md, "Published results"): G->C 70.19, G->B 63.13, G->M 71.28 (avg 68.20).

Train:     python tools/lazyconfig_train_net.py \
               --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py
Evaluate:  python tools/lazyconfig_train_net.py --eval-only \
               --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
               train.init_checkpoint=PATH/TO/checkpoint.pth
Other targets: add 'dataloader.targets=[name,...]' (any registered dataset; see configs/common/data/semseg_dg.py).
"""
from mfuser.engine.optimizer import OFFICIAL_CUSTOM_KEYS

from ..common.data.gta5 import dataloader
from ..common.models.mfuser_eva02 import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

# Pretrained encoders, relative to the working directory (override: model.backbone.vfm.weights=/abs/path.pth).
# The VLM file holds both the image and the text tower.
PRETRAINED_VFM = "pretrained/dinov2_vitl14_pretrain.pth"
PRETRAINED_VLM = "pretrained/EVA02_CLIP_L_336_psz14_s6B.pt"
model.backbone.vfm.weights = PRETRAINED_VFM
model.backbone.vlm.weights = PRETRAINED_VLM
model.text_encoder.weights = PRETRAINED_VLM

# The vocabulary is the training dataset's (its metadata's stuff_classes), following overrides of the source.
model.class_names.dataset_name = "${dataloader.train.names}"

optimizer.weight_decay = 1e-05  # published: 1e-4 for CLIP, 1e-5 for EVA02 / SigLIP
optimizer.params.custom_keys = OFFICIAL_CUSTOM_KEYS["eva02"]  # the official paramwise_cfg.custom_keys

train.output_dir = "./output/mfuser_eva02_vitl_gta_512"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
