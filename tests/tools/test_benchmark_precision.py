"""tools/compare_precision.py: one checkpoint evaluated in fp32 and bf16 in one process, agreement and mIoU gap."""
import importlib.util
import json
import os

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.tools.toy_model import ToySemSeg, generate_toy_data

TOY_CONFIG = os.path.join(REPO_ROOT, "tests", "tools", "toy_config.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("compare_precision",
                                                  os.path.join(REPO_ROOT, "tools", "compare_precision.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MFUSER_TOY_DATA", generate_toy_data(str(tmp_path / "data")))
    torch.manual_seed(0)
    path = tmp_path / "toy.pth"
    torch.save({"model": ToySemSeg(num_classes=3, hidden=8).state_dict()}, path)
    return str(path)


def test_reports_agreement_and_miou_difference_per_domain(tool, toy_checkpoint, capsys, tmp_path):
    threads = torch.get_num_threads()
    try:
        code = tool.main(["--config-file", TOY_CONFIG, "--json", "--max-images", "2",
                          f"train.init_checkpoint={toy_checkpoint}", f"train.output_dir={tmp_path / 'out'}"])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert list(report["domains"]) == ["toy_target_a", "toy_target_b"]
    assert [r["pixels"] for r in report["domains"].values()] == [2 * 24 * 32, 2 * 30 * 40]  # original sizes
    for r in report["domains"].values():
        assert 0.0 <= r["agreement"] <= 1.0
        assert r["miou_diff"] == pytest.approx(r["mIoU"]["bf16"] - r["mIoU"]["fp32"])
        assert r["time_s"]["fp32"] > 0 and r["time_s"]["bf16"] > 0
    assert set(report["targets"]) == {"agreement>=99.5%", "|miou_diff|<=0.3"}
    table = tool.format_table(report["domains"])
    assert "toy_target_a" in table and "agreement" in table


def test_a_checkpoint_is_required(tool, toy_checkpoint, capsys):
    assert tool.main(["--config-file", TOY_CONFIG]) == 2
    assert "train.init_checkpoint" in capsys.readouterr().err
