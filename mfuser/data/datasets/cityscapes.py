"""Cityscapes: ``leftImg8bit/{split}/<city>/*_leftImg8bit.png`` + ``gtFine/{split}/<city>/*_gtFine_labelTrainIds.png``.

The trainId labels are written by ``datasets/prepare_cityscapes.py`` from the official ``*_gtFine_labelIds.png``.
"""

import os
from typing import List

from .common import build_records, pair_files, require_dir

__all__ = ["load_cityscapes", "CITYSCAPES_SPLITS"]

CITYSCAPES_SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"


def load_cityscapes(root: str, split: str, *, allow_unpaired: bool = False) -> List[dict]:
    """Dataset dicts for one Cityscapes split.

    Args:
        root: the Cityscapes root (holding ``leftImg8bit/`` and ``gtFine/``).
        split: "train", "val" or "test".
        allow_unpaired: leave out images without labels (and the reverse) instead of raising.
    """
    hint = (
        f"Download Cityscapes (see datasets/README.md) and run `python datasets/prepare_cityscapes.py {root}` "
        f"to write the *{LABEL_SUFFIX} files."
    )
    image_root = require_dir(os.path.join(root, "leftImg8bit", split), f"Cityscapes {split} images", hint)
    label_root = require_dir(os.path.join(root, "gtFine", split), f"Cityscapes {split} labels", hint)
    pairs = pair_files(image_root, label_root, IMAGE_SUFFIX, LABEL_SUFFIX, allow_unpaired=allow_unpaired, hint=hint)
    return build_records(pairs)
