"""mfuser.evaluation: per-domain SemSegEvaluator with the numpy-2-safe loader, table, results.json."""
import json

import numpy as np
import pytest
import torch

from mfuser.evaluation import (
    build_sem_seg_evaluator,
    check_registered,
    evaluate_domains,
    format_results_table,
    write_results_json,
)
from tests.tools.toy_model import generate_toy_data, register_toy_domains


class Oracle(torch.nn.Module):
    """Predicts the ground truth (read from the label file), except class 2 -> 0 in one column."""

    def __init__(self, gt_of):
        super().__init__()
        self.gt_of = gt_of

    def forward(self, inputs):
        from PIL import Image

        outs = []
        for d in inputs:
            gt = np.asarray(Image.open(self.gt_of[d["file_name"]])).astype(np.int64)
            gt[gt == 255] = 0
            scores = torch.nn.functional.one_hot(torch.as_tensor(gt), 3).permute(2, 0, 1).float()
            outs.append({"sem_seg": scores})
        return outs


def test_evaluate_two_domains_table_and_json(tmp_path):
    from detectron2.data import DatasetCatalog, build_detection_test_loader

    from mfuser.data.mappers import MFuserTestDatasetMapper

    register_toy_domains(generate_toy_data(str(tmp_path / "data")))
    names = ["toy_target_a", "toy_target_b"]
    gt_of = {d["file_name"]: d["sem_seg_file_name"] for n in names for d in DatasetCatalog.get(n)}
    loaders = {n: build_test_loader_for(n, build_detection_test_loader, MFuserTestDatasetMapper) for n in names}
    evaluators = {n: build_sem_seg_evaluator(n, distributed=False) for n in names}
    results = evaluate_domains(Oracle(gt_of), loaders, evaluators)
    assert list(results) == names + ["average"]
    for n in names:
        assert results[n]["mIoU"] == pytest.approx(100.0) and results[n]["num_images"] > 0
    table = format_results_table(results, per_class=True)
    assert "toy_target_b" in table and "average" in table and "sky" in table
    path = write_results_json(results, str(tmp_path / "out" / "results.json"))
    with open(path) as f:
        assert json.load(f)["average"]["mIoU"] == pytest.approx(100.0)


def build_test_loader_for(name, build_detection_test_loader, mapper_cls):
    from detectron2.data import DatasetCatalog

    return build_detection_test_loader(DatasetCatalog.get(name), mapper=mapper_cls(resize_to=None), num_workers=0)


def test_check_registered_lists_names():
    with pytest.raises(KeyError, match="not_a_domain.*Registered datasets"):
        check_registered(["not_a_domain"])


def test_nan_classes_become_null_in_json(tmp_path):
    res = {"a": {"mIoU": 50.0, "mACC": 60.0, "IoU": {"x": float("nan")}, "ACC": {}}}
    write_results_json(res, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["a"]["IoU"]["x"] is None
