"""MFuser, DINOv2-L + EVA02-CLIP-L/14-336,
trained on Cityscapes train (512x512 crops, batch 2 per GPU, 20k iterations),
evaluated on BDD100K val, Mapillary val.
Paper (docs/reference.md, "Published results"): C->B 65.81, C->M 77.93 (avg 71.87).

Train:     python tools/lazyconfig_train_net.py \
               --config-file configs/mfuser/mfuser_eva02_vitl_city_512.py
Evaluate:  python tools/lazyconfig_train_net.py --eval-only \
               --config-file configs/mfuser/mfuser_eva02_vitl_city_512.py \
               train.init_checkpoint=PATH/TO/checkpoint.pth
Everything but the data is the GTA5 config's (mfuser_eva02_vitl_gta_512.py).
Other targets: add 'dataloader.targets=[name,...]' (any registered dataset; see configs/common/data/semseg_dg.py).
"""
from ..common.data.cityscapes import dataloader
from .mfuser_eva02_vitl_gta_512 import lr_multiplier, model, optimizer, train

train.output_dir = "./output/mfuser_eva02_vitl_city_512"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
