"""BDD100K 10k semantic segmentation: ``images/10k/{split}/*.jpg`` + labels in one of two layouts:

* ``labels/sem_seg/masks/{split}/*.png``: grayscale trainIds (label_format "trainid"), the published README;
* ``labels/sem_seg/colormaps/{split}/*.png``: colour-coded (label_format "palette"), the published configs.
  Palette PNGs are read by palette index (the indices are the trainIds); RGB files are mapped back
  through the 19 class colours and unknown colours are refused.

When both exist, ``masks`` is used. No preparation is needed.
"""

import os
from typing import List, Tuple

from .common import DatasetNotFoundError, build_records, pair_files, require_dir

__all__ = ["load_bdd100k", "bdd100k_label_layout", "BDD100K_SPLITS"]

BDD100K_SPLITS = ("train", "val")
IMAGE_SUFFIX = ".jpg"
LABEL_SUFFIX = ".png"
_LAYOUTS = (("masks", "trainid"), ("colormaps", "palette"))


def bdd100k_label_layout(root: str, split: str) -> Tuple[str, str]:
    """``(label_dir, label_format)`` of the label layout present for ``split``; raises if none is."""
    for sub, fmt in _LAYOUTS:
        d = os.path.join(root, "labels", "sem_seg", sub, split)
        if os.path.isdir(d):
            return d, fmt
    expected = " or ".join(os.path.join(root, "labels", "sem_seg", sub, split) for sub, _ in _LAYOUTS)
    raise DatasetNotFoundError(
        f"BDD100K {split} labels: expected the folder {expected}, which does not exist. "
        "Download the 10K semantic segmentation labels (see datasets/README.md)."
    )


def default_label_format(root: str, split: str) -> str:
    """The label format of the layout present now (``"trainid"`` when none is: masks is the default)."""
    try:
        return bdd100k_label_layout(root, split)[1]
    except DatasetNotFoundError:
        return "trainid"


def load_bdd100k(root: str, split: str, *, allow_unpaired: bool = False) -> List[dict]:
    """Dataset dicts for one BDD100K 10k split. Each record also carries ``"label_format"``."""
    image_root = require_dir(
        os.path.join(root, "images", "10k", split), f"BDD100K {split} images", "Download the 10K images."
    )
    label_root, fmt = bdd100k_label_layout(root, split)
    pairs = pair_files(image_root, label_root, IMAGE_SUFFIX, LABEL_SUFFIX, allow_unpaired=allow_unpaired)
    return build_records(pairs, extra={"label_format": fmt})
