"""Register the generated domain-shift data (:mod:`mfuser.data.synthetic`) through the real loaders.

Each generated domain is written in the layout of a real dataset, so it is loaded by the same code:
the source like GTA5, the targets like Cityscapes, BDD100K and Mapillary.
"""
import os

from ..rcs_stats import RCS_STATS_FILENAME
from .bdd100k import load_bdd100k
from .cityscapes import load_cityscapes
from .gta5 import load_gta5
from .mapillary import load_mapillary
from .register import register_semseg

__all__ = ["SYNTHETIC_DATASETS", "register_synthetic"]

#: name -> (domain folder written by the generator, loader(domain root), is the source)
SYNTHETIC_DATASETS = {
    "synthetic_source_train": ("source", load_gta5, True),
    "synthetic_cityscapes_val": ("target_cityscapes", lambda r: load_cityscapes(r, "val"), False),
    "synthetic_bdd_val": ("target_bdd", lambda r: load_bdd100k(r, "val"), False),
    "synthetic_mapillary_val": ("target_mapillary", lambda r: load_mapillary(r, "val"), False),
}


def register_synthetic(root: str) -> list:
    """Register the four generated domains under ``root`` (see ``datasets/generate_synthetic.py``).

    Idempotent; calling it with another root re-points the names. Loading fails with a clear error while
    the data is not generated yet. Returns the registered names (source first).
    """
    root = os.path.abspath(os.path.expanduser(root))
    for name, (domain, loader, is_source) in SYNTHETIC_DATASETS.items():
        droot = os.path.join(root, domain)
        extra = {"rcs_stats_file": os.path.join(droot, RCS_STATS_FILENAME)} if is_source else {}
        register_semseg(
            name,
            lambda r=droot, f=loader: f(r),
            spec=("synthetic", droot),
            replace=True,
            label_format="trainid",
            image_root=droot,
            sem_seg_root=droot,
            dataset_root=droot,
            **extra,
        )
    return list(SYNTHETIC_DATASETS)
