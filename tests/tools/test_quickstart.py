"""tools/quickstart.py end to end at toy scale: data, training, evaluation with baseline, plots, demo, resume."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "quickstart.py")


def run_quickstart(out, data, *extra):
    cmd = [sys.executable, TOOL, "--output-dir", str(out), "--data-root", str(data), "--num-source", "8",
           "--num-target", "3", "--threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quickstart")
    out, data = tmp / "run", tmp / "data"
    proc = run_quickstart(out, data, "train.max_iter=3", "train.checkpointer.period=2", "lr_multiplier.warmup_iters=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, data, proc.stdout


def test_a_short_run_writes_every_artefact(finished_run):
    out, data, stdout = finished_run
    targets = ["synthetic_cityscapes_val", "synthetic_bdd_val", "synthetic_mapillary_val"]
    summary = json.load(open(out / "quickstart_summary.json"))
    for name in targets:
        assert 0 <= summary["results"][name]["mIoU"] <= 100
        assert 0 < summary["majority_class_baseline"][name]["mIoU"] < 100
        assert name in stdout
        assert len(list((out / "demo" / name).glob("*.png"))) >= 2
    assert "majority-class mIoU" in stdout and "mean over targets" in stdout
    assert (out / "metrics.json").is_file() and (out / "model_final.pth").is_file()
    assert list(out.glob("*.png")), "plot_metrics wrote no plot"
    assert (data / "source" / "images").is_dir()


def test_rerun_resumes_and_foreign_directories_are_refused(finished_run, tmp_path):
    out, data, _ = finished_run
    proc = run_quickstart(out, data, "train.max_iter=3", "train.checkpointer.period=2", "lr_multiplier.warmup_iters=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming the run" in proc.stdout
    assert "Starting training from iteration 3" in proc.stdout + proc.stderr  # nothing retrained

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = run_quickstart(foreign, data)
    assert proc.returncode == 2
    assert "is not a quickstart run" in proc.stderr and "--overwrite" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
