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


def test_full_size_counts_are_the_official_ones_without_any_file():
    """Acceptance of the published-function issue; SigLIP's tokenizer file is not needed to count parameters."""
    models = os.path.join(REPO_ROOT, "configs", "common", "models")
    official = {"clip": 170_059_629, "eva02": 118_631_533, "siglip": 118_959_725}
    for variant, count in official.items():
        proc = run("--config-file", os.path.join(models, f"mfuser_{variant}.py"), "--json", "--no-flops")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["trainable_params"] == count
    proc = run("--config-file", os.path.join(models, "mfuser_siglip.py"), "--json",
               "model.text_encoder.tokenizer_path=no/such/spiece.model")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "flops" not in result and "no/such/spiece.model" in result["flops_skipped"]
    assert result["trainable_params"] == official["siglip"]
