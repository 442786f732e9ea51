"""SYNTHIA-RAND-CITYSCAPES: ``RGB/*.png`` + ``GT/LABELS/*_labelTrainIds.png``.

Accepted variants (docs/reference.md, "Folder layouts of the official configs"): the root itself or
``<root>/RAND_CITYSCAPES`` holds ``RGB`` and ``GT/LABELS``; either may have a ``train/`` subfolder (pairs are
matched by relative path). The trainId labels are written by ``datasets/prepare_synthia.py`` from the 16-bit
originals.
"""

import os
from typing import List

from .common import DatasetNotFoundError, build_records, pair_files

__all__ = ["load_synthia", "synthia_base"]

IMAGE_SUFFIX = ".png"
LABEL_SUFFIX = "_labelTrainIds.png"


def synthia_base(root: str) -> str:
    """The folder that holds ``RGB`` and ``GT/LABELS``: ``root`` or ``root/RAND_CITYSCAPES``."""
    for base in (root, os.path.join(root, "RAND_CITYSCAPES")):
        if os.path.isdir(os.path.join(base, "RGB")) and os.path.isdir(os.path.join(base, "GT", "LABELS")):
            return base
    raise DatasetNotFoundError(
        f"SYNTHIA: expected the folders {os.path.join(root, 'RGB')} and {os.path.join(root, 'GT', 'LABELS')} "
        f"(or the same under {os.path.join(root, 'RAND_CITYSCAPES')}); they do not exist. "
        f"Download SYNTHIA-RAND-CITYSCAPES and run `python datasets/prepare_synthia.py {root}`."
    )


def load_synthia(root: str, *, allow_unpaired: bool = False) -> List[dict]:
    """Dataset dicts for SYNTHIA-RAND-CITYSCAPES (training only)."""
    base = synthia_base(root)
    hint = f"Run `python datasets/prepare_synthia.py {root}` to write the *{LABEL_SUFFIX} files."
    image_root, label_root = os.path.join(base, "RGB"), os.path.join(base, "GT", "LABELS")
    pairs = pair_files(image_root, label_root, IMAGE_SUFFIX, LABEL_SUFFIX, allow_unpaired=allow_unpaired, hint=hint)
    return build_records(pairs)
