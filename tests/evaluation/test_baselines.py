"""mfuser.evaluation.baselines: the majority-class baseline and the label histograms it is computed from."""
import cv2
import numpy as np
import pytest

from mfuser.data.classes import CITYSCAPES_CLASSES, NUM_CLASSES
from mfuser.evaluation import class_histogram, majority_class_baseline

SKY, ROAD, VEG = (CITYSCAPES_CLASSES.index(n) for n in ("sky", "road", "vegetation"))


def test_majority_class_baseline():
    src = np.zeros(NUM_CLASSES, np.int64)
    src[ROAD] = 10
    src[SKY] = 5
    tgt = np.zeros(NUM_CLASSES, np.int64)
    tgt[ROAD], tgt[SKY], tgt[VEG] = 40, 40, 20
    out = majority_class_baseline(src, tgt)
    assert out["class"] == ROAD and out["class_name"] == "road"
    assert out["mIoU"] == pytest.approx(100 * 0.4 / 3)  # IoU(road) = 40 / 100, averaged over 3 present classes
    assert out["pixel_accuracy"] == pytest.approx(40.0)
    with pytest.raises(ValueError):
        majority_class_baseline(src, tgt[:5])
    with pytest.raises(ValueError):
        majority_class_baseline(np.zeros(NUM_CLASSES), tgt)


def test_majority_class_baseline_counts_a_predicted_class_absent_from_the_target():
    src, tgt = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    src[ROAD], tgt[SKY] = 1, 10
    out = majority_class_baseline(src, tgt)
    assert out["mIoU"] == 0.0 and out["pixel_accuracy"] == 0.0  # road predicted, never right


def test_class_histogram_excludes_ignore(tmp_path):
    lab = np.full((4, 6), 255, np.uint8)
    lab[:2] = ROAD
    lab[2, :3] = SKY
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        assert cv2.imwrite(paths[-1], lab)
    hist = class_histogram(paths)
    assert hist.dtype == np.int64 and hist.shape == (NUM_CLASSES,)
    assert hist[ROAD] == 24 and hist[SKY] == 6 and hist.sum() == 30
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        class_histogram([str(tmp_path / "bad.png")])
