"""ACDC (Adverse Conditions Dataset with Correspondences) as MFuser target domains.

A new evaluation domain is one call to :func:`mfuser.data.register_target_domain`; this module registers
the four ACDC conditions with it. Layout under ``<root>`` (default ``$DETECTRON2_DATASETS/acdc``)::

    rgb_anon/<condition>/<split>/<sequence>/<frame>_rgb_anon.png
    gt/<condition>/<split>/<sequence>/<frame>_gt_labelTrainIds.png

Registered names: ``acdc_{fog,night,rain,snow}_{train,val}`` (19 Cityscapes classes, trainId labels).
The folders are read on first use, so importing this module never touches the disk.
"""

import os
from typing import List

from mfuser.data import register_target_domain

__all__ = ["ACDC_CONDITIONS", "ACDC_SPLITS", "ACDC_VAL_NAMES", "register_all_acdc"]

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_SPLITS = ("train", "val")
ACDC_VAL_NAMES = tuple(f"acdc_{c}_val" for c in ACDC_CONDITIONS)


def register_all_acdc(root: str | None = None) -> List[str]:
    """Register every ACDC condition and split under ``root``; returns the names. Idempotent."""
    if root is None:
        root = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "acdc")
    names = []
    for cond in ACDC_CONDITIONS:
        for split in ACDC_SPLITS:
            names.append(
                register_target_domain(
                    f"acdc_{cond}_{split}",
                    os.path.join(root, "rgb_anon", cond, split),
                    os.path.join(root, "gt", cond, split),
                    image_suffix="_rgb_anon.png",
                    label_suffix="_gt_labelTrainIds.png",
                    label_format="trainid",
                    overwrite=True,  # calling again with another root re-points the names
                )
            )
    return names


register_all_acdc()
