import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "tools", "benchmark_scan.py")
KEYS = {"shape", "ref_fwd_ms", "ours_fwd_ms", "fwd_speedup", "ref_fwdbwd_ms", "ours_fwdbwd_ms", "fwdbwd_speedup",
        "max_abs_err", "max_rel_err", "peak_mem_mb"}


def run(*args, check=True):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, check=check,
                          cwd=REPO_ROOT)


def test_json_on_a_tiny_shape():
    out = run("--batch", "1", "--dim", "4", "--length", "37", "--state", "5", "--threads", "1", "--repeats", "1",
              "--json").stdout
    result = json.loads(out)
    assert KEYS <= result.keys()
    assert result["shape"] == {"batch": 1, "dim": 4, "length": 37, "state": 5, "dtype": "float32", "device": "cpu",
                               "threads": 1}
    for k in KEYS - {"shape"}:
        assert isinstance(result[k], float) and result[k] >= 0, k
    assert result["max_rel_err"] <= 1e-4
    assert result["fwd_speedup"] == pytest.approx(result["ref_fwd_ms"] / result["ours_fwd_ms"])


def test_table_and_help():
    table = run("--batch", "1", "--dim", "2", "--length", "9", "--state", "3", "--repeats", "1").stdout
    assert "forward+backward" in table and "speedup" in table and "max rel err" in table
    assert "--threads" in run("--help").stdout


def test_bad_arguments_fail_clearly():
    res = run("--length", "0", check=False)
    assert res.returncode != 0 and "--length must be >= 1" in res.stderr
    if not torch.cuda.is_available():
        res = run("--device", "cuda", check=False)
        assert res.returncode != 0 and "CUDA is not available" in res.stderr


def test_bf16_inputs():
    """--dtype bf16: ours on bf16 u / delta / B / C, the reference on float32 copies; errors of bf16 rounding only."""
    out = run("--batch", "1", "--dim", "4", "--length", "37", "--state", "16", "--threads", "1", "--repeats", "1",
              "--dtype", "bf16", "--json").stdout
    result = json.loads(out)
    assert result["shape"]["dtype"] == "bfloat16"
    assert 1e-6 < result["max_rel_err"] <= 1e-2  # the output and the bf16 inputs' gradients are rounded to bf16
