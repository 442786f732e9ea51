"""Kill-and-resume equals an uninterrupted run (issue 16): the tiny MFuser with its real augmentations (random
resize, crop, flip, photometric distortion), rare-class sampling, stochastic depth, one loader worker, CPU."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT

CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")
SCRIPT = os.path.join(REPO_ROOT, "tools", "lazyconfig_train_net.py")
OPTS = ["train.max_iter=6", "train.checkpointer.period=3", "lr_multiplier.warmup_iters=2", "train.log_period=1",
        "dataloader.targets=[]", "dataloader.train.total_batch_size=2", "dataloader.train.min_pixels=100",
        "dataloader.train.num_workers=1"]

# Runs the training tool and SIGKILLs the process when iteration $KILL_AT_ITER starts (no clean-up of any kind).
DRIVER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from detectron2.engine import hooks
kill_at = int(os.environ.get("KILL_AT_ITER", "-1"))
_before = hooks.IterationTimer.before_step
def before_step(self):
    if self.trainer.iter == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    _before(self)
hooks.IterationTimer.before_step = before_step
sys.argv = [{script!r}] + sys.argv[1:]
exec(compile(open({script!r}).read(), {script!r}, "exec"), {{"__name__": "__main__"}})
"""


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from mfuser.data.synthetic import generate_all

    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_all(root, num_source=8, num_target=2, size=(256, 128))
    return root


def _train(root, out, *args, kill_at=-1):
    env = dict(os.environ, MFUSER_SYNTHETIC_ROOT=root, OMP_NUM_THREADS="1", KILL_AT_ITER=str(kill_at),
               PYTHONPATH=REPO_ROOT)
    driver = DRIVER.format(root=REPO_ROOT, script=SCRIPT)
    return subprocess.run([sys.executable, "-c", driver, "--config-file", CONFIG, *args, *OPTS,
                           f"train.output_dir={out}", "train.device=cpu"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)


def _final(out):
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)["model"]


def test_killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(synthetic_root, tmp_path):
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    proc = _train(synthetic_root, ref)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = _train(synthetic_root, run, kill_at=4)  # after the checkpoint of iteration 2, during iteration 4
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(f for f in os.listdir(run) if f.endswith(".pth")) == ["model_0000002.pth"]
    resumed = _train(synthetic_root, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming the sample stream" in resumed.stdout

    a, b = _final(ref), _final(run)
    assert a.keys() == b.keys() and len(a) > 50
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} of {len(a)} tensors differ, e.g. {differing[:5]}"

    with open(os.path.join(run, "metrics.json")) as f:
        iters = [json.loads(line)["iteration"] for line in f if line.strip()]
    assert sorted(iters) == sorted(set(iters)) and max(iters) == 5, iters  # each iteration once
