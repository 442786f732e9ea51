"""Reference baselines for the evaluation tables: the majority-class predictor, from label histograms.

:func:`class_histogram` counts the pixels of each class over trainId label PNGs; :func:`majority_class_baseline`
scores the constant prediction of the most frequent source class on a target domain with the averaging of
detectron2's ``SemSegEvaluator``, so that a trained model's mIoU can be read against it (``tools/quickstart.py``
prints both).
"""

from typing import Sequence

import cv2
import numpy as np

from mfuser.data.classes import CITYSCAPES_CLASSES, NUM_CLASSES

__all__ = ["class_histogram", "majority_class_baseline"]


def class_histogram(label_paths: Sequence[str], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Pixel count per class over trainId label PNGs (ignore excluded); shape (num_classes,) int64."""
    hist = np.zeros(num_classes, np.int64)
    for p in label_paths:
        lab = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            raise ValueError(f"label_paths: cannot read {p} as a single-channel label PNG")
        hist += np.bincount(lab.ravel(), minlength=256)[:num_classes].astype(np.int64)
    return hist


def majority_class_baseline(source_hist: Sequence[int], target_hist: Sequence[int]) -> dict:
    """mIoU (%) of predicting the most frequent source class at every labelled target pixel.

    Uses detectron2 ``SemSegEvaluator``'s averaging: the mean over classes that occur in the target
    ground truth or in the prediction. With a constant prediction ``c`` the IoU of ``c`` is
    ``n_c / N`` and every other class scores 0.

    Returns:
        ``{"class": trainId, "class_name": str, "mIoU": float, "pixel_accuracy": float}``.
    """
    s = np.asarray(source_hist, np.float64)
    t = np.asarray(target_hist, np.float64)
    if s.shape != t.shape or s.ndim != 1 or s.sum() <= 0 or t.sum() <= 0:
        raise ValueError(
            f"source_hist / target_hist: expected two non-empty 1-D histograms of equal length, "
            f"got shapes {s.shape} and {t.shape}"
        )
    c = int(np.argmax(s))
    present = t > 0
    present[c] = True
    iou_c = t[c] / t.sum()
    return dict(
        **{"class": c},
        class_name=CITYSCAPES_CLASSES[c] if len(s) == NUM_CLASSES else str(c),
        mIoU=float(100 * iou_c / present.sum()),
        pixel_accuracy=float(100 * t[c] / t.sum()),
    )
