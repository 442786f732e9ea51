"""Mapillary Vistas, evaluated with the 19 Cityscapes classes. Accepted layouts, tried in this order:

1. ``cityscapes_trainIdLabel/{train,val}/label/<name>.png`` with images ``{training,validation}/images/<name>.jpg``
   (the Rein/TLDR layout of the published README; written by ``datasets/prepare_mapillary.py``);
2. ``{training,validation}/labels/<name>_labelTrainIds.png`` with the same images (the published configs);
3. val only: ``half/val_img/<name>.jpg`` + ``half/val_label/<name>.png`` (half resolution,
   ``prepare_mapillary.py --half``).

``load_mapillary(root, "val")`` uses the first full-resolution layout found and falls back to ``half``;
``half=True`` / ``half=False`` force one or the other (the dataset ``mapillary_val_half`` uses ``half=True``).
"""

import os
from typing import List

from .common import DatasetNotFoundError, build_records, pair_files

__all__ = ["load_mapillary", "MAPILLARY_SPLITS", "mapillary_layouts"]

MAPILLARY_SPLITS = {"train": "training", "val": "validation"}


def mapillary_layouts(root: str, split: str, half: bool | None = None):
    """Candidate ``(image_dir, image_suffix, label_dir, label_suffix)`` layouts, in preference order."""
    if split not in MAPILLARY_SPLITS:
        raise ValueError(f"Mapillary split: expected one of {sorted(MAPILLARY_SPLITS)}, got {split!r}")
    vistas = MAPILLARY_SPLITS[split]
    images = os.path.join(root, vistas, "images")
    full = [
        (images, ".jpg", os.path.join(root, "cityscapes_trainIdLabel", split, "label"), ".png"),
        (images, ".jpg", os.path.join(root, vistas, "labels"), "_labelTrainIds.png"),
    ]
    halves = [
        (os.path.join(root, "half", f"{split}_img"), ".jpg", os.path.join(root, "half", f"{split}_label"), ".png")
    ]
    if half is None:
        return full + halves
    return halves if half else full


def load_mapillary(root: str, split: str, *, half: bool | None = None, allow_unpaired: bool = False) -> List[dict]:
    """Dataset dicts for one Mapillary split with labels in Cityscapes trainIds."""
    layouts = mapillary_layouts(root, split, half)
    hint = f"Run `python datasets/prepare_mapillary.py {root}`{' --half' if half else ''} to convert the Vistas labels."
    for img_dir, img_sfx, lab_dir, lab_sfx in layouts:
        if not (os.path.isdir(img_dir) and os.path.isdir(lab_dir)):
            continue
        if lab_sfx == "_labelTrainIds.png" and not any(f.endswith(lab_sfx) for f in os.listdir(lab_dir)):
            continue  # the original Vistas labels folder, not converted in place
        pairs = pair_files(img_dir, lab_dir, img_sfx, lab_sfx, allow_unpaired=allow_unpaired, hint=hint)
        return build_records(pairs)
    expected = "; or ".join(f"{i} + {lab}/*{s}" for i, _, lab, s in layouts)
    raise DatasetNotFoundError(f"Mapillary {split}: expected the folders {expected}; none exists. {hint}")
