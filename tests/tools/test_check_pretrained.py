"""tools/check_pretrained.py on tiny official-layout files (the full-size run is documented, not run here)."""
import os
import subprocess
import sys

import pytest

from mfuser.modeling.encoders.synthetic_checkpoints import write_official_checkpoint
from tests.conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "check_pretrained.py")


def _run(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {k: write_official_checkpoint(k, str(d / f"{k}.pt"), size="tiny") for k in ("dinov2", "clip", "eva02",
                                                                                        "siglip")}


def test_help():
    r = _run("--help")
    assert r.returncode == 0 and "--kind" in r.stdout and "Exit status" in r.stdout


def test_all_tiny_kinds_load_in_one_process(files):
    """The same code path as the full-size check, in-process to keep it fast."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
    try:
        import check_pretrained
    finally:
        sys.path.pop(0)
    for kind, path in files.items():
        assert check_pretrained.main([path, "--kind", kind, "--tiny"]) == 0, kind


def test_tiny_clip_subprocess_ok(files):
    r = _run(files["clip"], "--kind", "clip", "--tiny", "-v")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "missing 0, unexpected 0" in r.stdout and "text tower" in r.stdout and "(truncated)" in r.stdout


def test_wrong_kind_exits_1_and_names_the_file_type(files):
    r = _run(files["clip"], "--kind", "siglip", "--tiny", "--max-names", "2")
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "OpenAI CLIP archive" in r.stdout and "more" in r.stdout


def test_unreadable_exits_2(tmp_path, files):
    r = _run(str(tmp_path / "absent.pth"), "--kind", "dinov2")
    assert r.returncode == 2 and "absent.pth" in r.stderr and "Traceback" not in r.stderr
    data = open(files["eva02"], "rb").read()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 3])
    r = _run(str(trunc), "--kind", "eva02")
    assert r.returncode == 2 and "trunc.pt" in r.stderr and "Traceback" not in r.stderr
