"""Source SYNTHIA (RAND-CITYSCAPES) -> targets Cityscapes, BDD100K, Mapillary. See semseg_dg.py for the keys."""
from .semseg_dg import dataloader

dataloader.train.names = "synthia_train"
dataloader.targets = ["cityscapes_val", "bdd100k_val", "mapillary_val"]
