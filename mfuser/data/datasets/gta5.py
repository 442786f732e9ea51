"""GTA5: ``images/*.png`` + ``labels/*_labelTrainIds.png`` (pairs matched by relative path, so a
``images/train`` + ``labels/train`` split also works).

The trainId labels are written by ``datasets/prepare_gta5.py`` from the original Cityscapes-id labels;
labels whose size differs from their image are resized (nearest) to the image size there.
"""

import os
from typing import List

from .common import build_records, pair_files, require_dir

__all__ = ["load_gta5"]

IMAGE_SUFFIX = ".png"
LABEL_SUFFIX = "_labelTrainIds.png"


def load_gta5(root: str, *, allow_unpaired: bool = False) -> List[dict]:
    """Dataset dicts for GTA5 (all images; GTA5 is used for training only)."""
    hint = (
        f"Download GTA5 (see datasets/README.md) and run `python datasets/prepare_gta5.py {root}` "
        f"to write the *{LABEL_SUFFIX} files."
    )
    image_root = require_dir(os.path.join(root, "images"), "GTA5 images", hint)
    label_root = require_dir(os.path.join(root, "labels"), "GTA5 labels", hint)
    pairs = pair_files(image_root, label_root, IMAGE_SUFFIX, LABEL_SUFFIX, allow_unpaired=allow_unpaired, hint=hint)
    return build_records(pairs)
