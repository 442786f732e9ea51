"""Register the driving datasets with detectron2's catalogs (the pattern of detectron2's ``builtin.py``).

Registered names (always registered; loading raises a clear error naming the expected path and the
preparation script when files are absent):

=====================  ==========================  ============================================
name                   root                        layout (see datasets/README.md)
=====================  ==========================  ============================================
gta5_train             <root>/gta                  images/*.png + labels/*_labelTrainIds.png
synthia_train          <root>/synthia              RGB/*.png + GT/LABELS/*_labelTrainIds.png
cityscapes_train/val   <root>/cityscapes           leftImg8bit/{split} + gtFine/{split}
bdd100k_train/val      <root>/bdd100k              images/10k/{split} + labels/sem_seg/{masks|colormaps}/{split}
mapillary_train/val    <root>/mapillary            cityscapes_trainIdLabel/{split}/label (or the config / half layouts)
mapillary_val_half     <root>/mapillary            half/val_img + half/val_label
=====================  ==========================  ============================================

``<root>`` is the ``DETECTRON2_DATASETS`` environment variable (default ``datasets``). The published
code's ``data/`` folder works by pointing the variable at it.
"""

import difflib
import os
from typing import Callable, List

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..classes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, IGNORE_LABEL
from ..rcs_stats import RCS_STATS_FILENAME
from .bdd100k import default_label_format, load_bdd100k
from .cityscapes import load_cityscapes
from .gta5 import load_gta5
from .mapillary import load_mapillary
from .synthia import load_synthia

__all__ = [
    "register_all",
    "register_semseg",
    "unregister",
    "default_root",
    "project_dataset_names",
    "close_dataset_names",
    "BUILTIN_DATASETS",
]

#: name -> (sub-folder of the root, loader(dataset_root), is a source (training) dataset)
BUILTIN_DATASETS = {
    "gta5_train": ("gta", lambda r: load_gta5(r), True),
    "synthia_train": ("synthia", lambda r: load_synthia(r), True),
    "cityscapes_train": ("cityscapes", lambda r: load_cityscapes(r, "train"), True),
    "cityscapes_val": ("cityscapes", lambda r: load_cityscapes(r, "val"), False),
    "bdd100k_train": ("bdd100k", lambda r: load_bdd100k(r, "train"), False),
    "bdd100k_val": ("bdd100k", lambda r: load_bdd100k(r, "val"), False),
    "mapillary_train": ("mapillary", lambda r: load_mapillary(r, "train"), False),
    "mapillary_val": ("mapillary", lambda r: load_mapillary(r, "val"), False),
    "mapillary_val_half": ("mapillary", lambda r: load_mapillary(r, "val", half=True), False),
}

# name -> spec of what we registered, so that registering again is a no-op (or a clean replacement)
_REGISTERED = {}


def default_root() -> str:
    """``$DETECTRON2_DATASETS`` or ``datasets``, user-expanded."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_semseg(name: str, load_fn: Callable[[], list], *, spec, replace: bool = False, **metadata) -> None:
    """Register ``name`` in DatasetCatalog/MetadataCatalog with the semantic-segmentation metadata.

    ``metadata`` must contain ``label_format``, ``image_root``, ``sem_seg_root``; ``stuff_classes`` and
    ``stuff_colors`` default to the 19 Cityscapes classes. ``ignore_label=255`` and
    ``evaluator_type="sem_seg"`` are always set. Registering the same ``spec`` again is a no-op; a different
    ``spec`` replaces the registration when ``replace`` else raises.
    """
    if name in DatasetCatalog.list():
        if _REGISTERED.get(name) == spec:
            return
        if not replace:
            raise ValueError(
                f"Dataset {name!r} is already registered with different arguments; choose another name or pass "
                "replace=True (overwrite=True to register_target_domain)."
            )
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    meta = {"stuff_classes": list(CITYSCAPES_CLASSES), "stuff_colors": [tuple(c) for c in CITYSCAPES_COLORS]}
    meta.update(metadata)
    meta.update(ignore_label=IGNORE_LABEL, evaluator_type="sem_seg")
    DatasetCatalog.register(name, load_fn)
    MetadataCatalog.get(name).set(**meta)
    _REGISTERED[name] = spec


def unregister(name: str) -> bool:
    """Remove ``name`` from the catalogs if it was registered through :func:`register_semseg` (detectron2's own
    datasets are left alone). Returns whether something was removed."""
    if name not in _REGISTERED:
        return False
    del _REGISTERED[name]
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    return True


def project_dataset_names() -> List[str]:
    """The datasets this project registered (built-in, generated, catalogued, ``register_target_domain``), sorted;
    not detectron2's own COCO / LVIS / ... names."""
    return sorted(_REGISTERED)


def close_dataset_names(name: str, candidates: List[str] | None = None, n: int = 5) -> List[str]:
    """Up to ``n`` names of ``candidates`` (default :func:`project_dataset_names`) that look like ``name``
    (``difflib``'s ratio >= 0.6, best first)."""
    candidates = project_dataset_names() if candidates is None else list(candidates)
    return difflib.get_close_matches(str(name), candidates, n=n, cutoff=0.6)


def register_all(root: str | None = None) -> list:
    """Register every builtin dataset under ``root`` (default :func:`default_root`). Idempotent; calling it
    with another root re-points the names. Returns the registered names."""
    root = os.path.abspath(default_root() if root is None else os.path.expanduser(root))
    for name, (sub, loader, is_source) in BUILTIN_DATASETS.items():
        droot = os.path.join(root, sub)
        label_format = "trainid"
        if name.startswith("bdd100k_"):
            label_format = default_label_format(droot, name.split("_")[1])
        extra = {"dataset_root": droot}
        if is_source:
            extra["rcs_stats_file"] = os.path.join(droot, RCS_STATS_FILENAME)
        register_semseg(
            name,
            lambda r=droot, f=loader: f(r),
            spec=("builtin", droot, label_format),
            replace=True,
            label_format=label_format,
            image_root=droot,
            sem_seg_root=droot,
            **extra,
        )
    return list(BUILTIN_DATASETS)
