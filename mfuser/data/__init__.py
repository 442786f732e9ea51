"""Datasets, label conventions, mappers, samplers (rare-class, resumable) and the train-loader builders.

Importing this package registers the builtin datasets under ``$DETECTRON2_DATASETS`` (default
``datasets``), as detectron2's ``builtin.py`` does (see :mod:`mfuser.data.datasets.register`), then every domain of
the catalogue ``$DETECTRON2_DATASETS/mfuser_domains/*.json`` written by ``tools/register_domain.py`` (see
:mod:`mfuser.data.catalogue`).
"""

from . import classes
from .build import build_resumable_rcs_train_loader, build_resumable_train_loader
from .catalogue import CatalogueError, register_catalogue
from .classes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, CITYSCAPES_ID_TO_TRAINID, IGNORE_LABEL, NUM_CLASSES
from .datasets import (
    BUILTIN_DATASETS,
    DatasetNotFoundError,
    load_bdd100k,
    load_cityscapes,
    load_gta5,
    load_mapillary,
    load_synthia,
    load_target_domain,
    register_all,
    register_synthetic,
    register_target_domain,
)
from .labels import make_sem_seg_loading_fn, read_label, write_label
from .mappers import MFuserSemanticDatasetMapper, MFuserTestDatasetMapper, build_train_augmentations
from .samplers import (
    RareClassDataset,
    RareClassSampler,
    ResumableSampler,
    compute_class_stats,
    find_resumable_sampler,
    load_or_compute_class_stats,
)
from .transforms import IMAGE_PAD_RGB, PadToSize, PhotoMetricDistortion, ResizeByRatio, ResizeKeepRatio, keep_ratio_fit

register_all()
register_catalogue()

__all__ = [
    "classes",
    "CatalogueError",
    "register_catalogue",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "CITYSCAPES_ID_TO_TRAINID",
    "IGNORE_LABEL",
    "NUM_CLASSES",
    "BUILTIN_DATASETS",
    "DatasetNotFoundError",
    "load_bdd100k",
    "load_cityscapes",
    "load_gta5",
    "load_mapillary",
    "load_synthia",
    "load_target_domain",
    "register_all",
    "register_synthetic",
    "register_target_domain",
    "build_resumable_train_loader",
    "build_resumable_rcs_train_loader",
    "make_sem_seg_loading_fn",
    "read_label",
    "write_label",
    "MFuserSemanticDatasetMapper",
    "MFuserTestDatasetMapper",
    "build_train_augmentations",
    "RareClassDataset",
    "RareClassSampler",
    "ResumableSampler",
    "find_resumable_sampler",
    "compute_class_stats",
    "load_or_compute_class_stats",
    "IMAGE_PAD_RGB",
    "PadToSize",
    "PhotoMetricDistortion",
    "ResizeByRatio",
    "ResizeKeepRatio",
    "keep_ratio_fit",
]
