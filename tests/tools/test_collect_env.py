import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_collect_env_prints_every_item():
    out = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "collect_env.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for key in ["Python", "torch", "torchvision", "detectron2", "timm", "open_clip", "numpy", "CUDA available",
                "mamba_ssm CUDA kernels", "selective-scan backend"]:
        assert key in out, f"{key!r} missing from collect_env output:\n{out}"
    d2_line = next(line for line in out.splitlines() if line.startswith("detectron2 "))
    assert "@" in d2_line, "detectron2 must be importable and its path printed"
