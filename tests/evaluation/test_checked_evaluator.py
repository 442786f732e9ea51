"""CheckedSemSegEvaluator scores exactly as detectron2's SemSegEvaluator, and encodes predictions only to write them."""
import json
import os

import numpy as np
import pytest
import torch
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from mfuser.evaluation import build_sem_seg_evaluator
from mfuser.evaluation.multi_domain import CheckedSemSegEvaluator

K, HW = 5, (24, 40)


@pytest.fixture()
def domain(tmp_path):
    from mfuser.data.datasets.target_domain import register_target_domain

    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        os.makedirs(tmp_path / sub)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (*HW, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
        label = rng.integers(0, K, HW).astype(np.uint8)
        label[:3] = 255  # an ignored band
        Image.fromarray(label).save(tmp_path / "labels" / f"{i}_gt.png")
    name = "checked_evaluator_domain"
    register_target_domain(name, str(tmp_path / "images"), str(tmp_path / "labels"), image_suffix=".png",
                           label_suffix="_gt.png", classes=[f"c{k}" for k in range(K)], overwrite=True)
    return name


def _inputs_outputs(name):
    from detectron2.data import DatasetCatalog

    gen = torch.Generator().manual_seed(0)
    dicts = DatasetCatalog.get(name)
    outputs = []
    for _ in dicts:
        scores = torch.randn(K, *HW, generator=gen)
        scores[:, :4, :4] = 0.5  # ties: the first maximum (class 0) wins in both
        outputs.append({"sem_seg": scores})
    return dicts, outputs


def _run(evaluator, dicts, outputs):
    evaluator.reset()
    for d, o in zip(dicts, outputs):
        evaluator.process([d], [o])
    return evaluator.evaluate()


def _plain(name, output_dir=None):
    from mfuser.data.labels import read_label

    return SemSegEvaluator(name, distributed=False, output_dir=output_dir,
                           sem_seg_loading_fn=lambda path, dtype=int: read_label(path, "trainid", K).astype(dtype))


def test_same_scores_as_detectron2(domain):
    dicts, outputs = _inputs_outputs(domain)
    ours = _run(build_sem_seg_evaluator(domain, distributed=False), dicts, outputs)
    ref = _run(_plain(domain), dicts, outputs)
    assert isinstance(build_sem_seg_evaluator(domain, distributed=False), CheckedSemSegEvaluator)
    assert ours.keys() == ref.keys()
    for key in ref["sem_seg"]:
        a, b = ours["sem_seg"][key], ref["sem_seg"][key]
        assert (np.isnan(a) and np.isnan(b)) or a == b, key


def test_predictions_encoded_only_when_written(domain, tmp_path):
    dicts, outputs = _inputs_outputs(domain)
    evaluator = build_sem_seg_evaluator(domain, distributed=False)
    _run(evaluator, dicts, outputs)
    assert evaluator._predictions == []  # nothing to write: no RLE encoding spent

    ours_dir, ref_dir = tmp_path / "ours", tmp_path / "ref"
    _run(build_sem_seg_evaluator(domain, distributed=False, output_dir=str(ours_dir)), dicts, outputs)
    _run(_plain(domain, output_dir=str(ref_dir)), dicts, outputs)
    with open(ours_dir / "sem_seg_predictions.json") as f, open(ref_dir / "sem_seg_predictions.json") as g:
        assert json.load(f) == json.load(g) != []
