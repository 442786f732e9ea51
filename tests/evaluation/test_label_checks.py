"""The evaluator checks each label against its image before scoring it (issue 16, deliverable 1).

detectron2's ``SemSegEvaluator`` alone scores a label with swapped height and width (or any shape of the same
pixel count) against a wrongly laid-out prediction, fails with a numpy broadcast error naming no file for other
sizes, and (with ``label_format="cityscapes_id"``) turns ids outside the Cityscapes table into ignore.
"""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mfuser.data.labels import LabelError
from mfuser.evaluation import build_sem_seg_evaluator, evaluate_domains
from mfuser.utils.cli import describe_error
from tests.tools.toy_model import TOY_CLASSES, ToySemSeg, make_toy_image

HW = (24, 32)


def _transpose(lab):
    return np.ascontiguousarray(lab.T)


def _cityscapes_ids(lab, bad=True):  # road 7, car 26, sky 23, border 0; bad: a stripe of id 40 (not in the table)
    ids = np.choose(np.where(lab == 255, 3, lab), [7, 26, 23, 0]).astype(np.uint8)
    if bad:
        ids[:, -2:] = 40
    return ids


# case -> (label made from the good one, label_format, the error's pattern after the label's name)
CASES = {
    "swapped": (_transpose, "trainid", r" is 24x32 but image .*000\.png is 32x24 .*height and width are swapped"),
    "same_count": (lambda lab: lab.reshape(16, 48), "trainid", r" is 48x16 but image .*000\.png is 32x24 .*same pix"),
    "other_size": (lambda lab: lab[:20], "trainid", r" is 32x20 but image .*000\.png is 32x24"),
    "value_77": (lambda lab: np.where(lab == 1, 77, lab).astype(np.uint8), "trainid",
                 r" \(image .*000\.png\) holds values \[77\] .*trainIds 0\.\.2 and ignore 255"),
    "cityscapes_id_40": (None, "cityscapes_id",
                         r" \(image .*000\.png\) holds values \[40\] .*Cityscapes label ids 0\.\.33"),
}


def _domain(root, case, make_label, label_format, good=False):
    from mfuser.data.datasets.target_domain import register_target_domain

    image, label = make_toy_image(np.random.default_rng(0), HW)
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    Image.fromarray(image).save(os.path.join(root, "images", "000.png"))
    if label_format == "cityscapes_id":
        label = _cityscapes_ids(label, bad=not good)
    elif not good:
        label = make_label(label)
    Image.fromarray(label).save(os.path.join(root, "labels", "000_gt.png"))
    classes = TOY_CLASSES if label_format == "trainid" else None  # cityscapes_id: the 19 classes
    name = f"label_check_{case}" + ("_good" if good else "")
    register_target_domain(name, os.path.join(root, "images"), os.path.join(root, "labels"), image_suffix=".png",
                           label_suffix="_gt.png", label_format=label_format, classes=classes, overwrite=True)
    return name, os.path.join(root, "labels", "000_gt.png")


def _evaluate(name, model=None):
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader

    from mfuser.data.mappers import MFuserTestDatasetMapper

    torch.manual_seed(0)
    model = model or ToySemSeg(num_classes=len(MetadataCatalog.get(name).stuff_classes)).eval()
    loader = build_detection_test_loader(DatasetCatalog.get(name), mapper=MFuserTestDatasetMapper(), num_workers=0)
    with torch.no_grad():
        return evaluate_domains(model, {name: loader}, {name: build_sem_seg_evaluator(name, distributed=False)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_label_refused_naming_label_and_image(tmp_path, case):
    make_label, label_format, pattern = CASES[case]
    good, _ = _domain(str(tmp_path / "good"), case, make_label, label_format, good=True)
    assert 0.0 <= _evaluate(good)[good]["mIoU"] <= 100.0  # the same image with its right label is scored
    name, label_file = _domain(str(tmp_path / "bad"), case, make_label, label_format)
    with pytest.raises(LabelError, match=label_file.replace(".", r"\.") + pattern) as info:
        _evaluate(name)
    line = describe_error(info.value)  # what the tools print: one line, both files
    assert line.startswith("error: ") and "\n" not in line and label_file in line and "images/000.png" in line


def test_prediction_of_another_size_names_the_image(tmp_path):
    class Cropped(torch.nn.Module):
        def forward(self, inputs):
            return [{"sem_seg": torch.rand(3, HW[0] - 1, HW[1])} for _ in inputs]

    name, _ = _domain(str(tmp_path), "pred_size", None, "trainid", good=True)
    with pytest.raises(RuntimeError, match=r"prediction for .*images/000\.png is 32x23, expected the image's size 32"):
        _evaluate(name, Cropped())
