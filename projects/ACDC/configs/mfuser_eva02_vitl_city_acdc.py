"""Evaluate a Cityscapes-trained MFuser (DINOv2-L + EVA02-CLIP-L) on the four ACDC conditions.

Everything (model, optimiser, training data) comes from the lead config
``configs/mfuser/mfuser_eva02_vitl_city_512.py``; only the evaluation targets change. Run from the
repository root::

    python tools/lazyconfig_train_net.py --eval-only \
        --config-file projects/ACDC/configs/mfuser_eva02_vitl_city_acdc.py \
        train.init_checkpoint=PATH/TO/mfuser_eva02_city.pth

The ACDC folders are read from ``$DETECTRON2_DATASETS/acdc`` (see projects/ACDC/README.md).
"""

from ....configs.mfuser.mfuser_eva02_vitl_city_512 import dataloader, lr_multiplier, model, optimizer, train
from ..acdc_datasets import register_all_acdc

register_all_acdc()

# ACDC frames are 1920x1080, close to Cityscapes' scale: evaluated at their original size.
dataloader.targets = ["acdc_fog_val", "acdc_night_val", "acdc_rain_val", "acdc_snow_val"]
train.output_dir = "./output/mfuser_eva02_vitl_city_acdc"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
