"""One module per dataset; :mod:`.register` registers them all and :mod:`.target_domain` adds new domains."""

from .bdd100k import load_bdd100k
from .cityscapes import load_cityscapes
from .common import DatasetNotFoundError, pair_files
from .gta5 import load_gta5
from .mapillary import load_mapillary
from .register import BUILTIN_DATASETS, default_root, register_all
from .synthetic import SYNTHETIC_DATASETS, register_synthetic
from .synthia import load_synthia
from .target_domain import load_target_domain, register_target_domain

__all__ = [
    "load_bdd100k",
    "load_cityscapes",
    "DatasetNotFoundError",
    "pair_files",
    "load_gta5",
    "load_mapillary",
    "BUILTIN_DATASETS",
    "default_root",
    "register_all",
    "SYNTHETIC_DATASETS",
    "register_synthetic",
    "load_synthia",
    "load_target_domain",
    "register_target_domain",
]
