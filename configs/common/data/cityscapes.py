"""Source Cityscapes train -> targets BDD100K, Mapillary. See semseg_dg.py for the keys."""
from .semseg_dg import dataloader

dataloader.train.names = "cityscapes_train"
dataloader.targets = ["bdd100k_val", "mapillary_val"]
