import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "analyze_model.py")
TINY = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_json_counts_and_flops_on_the_tiny_model():
    proc = run("--config-file", TINY, "--json", "--size", "128")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 < result["trainable_params"] < result["total_params"]
    modules = {row["module"]: row for row in result["modules"]}
    assert modules["backbone.vfm"]["trainable"] == 0 and modules["backbone.vfm"]["params"] > 0
    assert modules["head"]["trainable"] == modules["head"]["params"] > 0
    assert result["flops"] > 0


def test_missing_config_is_one_clear_error():
    proc = run("--config-file", "no/such/config.py")
    assert proc.returncode == 2
    assert "config file not found: no/such/config.py" in proc.stderr
