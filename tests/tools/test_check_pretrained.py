"""tools/check_pretrained.py and the library check it runs, on tiny official-layout files.

The tool builds full-size encoders (documented, not run here); the tests call the same check,
``mfuser.modeling.encoders.check.check_pretrained``, with the tiny encoder sizes of the family table, and run the
tool itself only where it builds no encoder (help, usage errors, unreadable files).
"""
import os
import subprocess
import sys

import pytest

from mfuser.modeling.encoders.check import check_pretrained
from mfuser.modeling.encoders.checkpoints import CheckpointError
from mfuser.modeling.encoders.families import FAMILIES, KINDS
from mfuser.utils.testing import tiny_towers_kwargs, write_official_checkpoint
from tests.conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "check_pretrained.py")


def _run(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, timeout=300)


def _check_tiny(path, kind, **kw):
    """The tool's check with the tiny encoders of ``kind``."""
    return check_pretrained(path, kind, encoder_kwargs=tiny_towers_kwargs(kind), **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {k: write_official_checkpoint(k, str(d / f"{k}.pt"), size="tiny") for k in KINDS}


def test_help():
    r = _run("--help")
    assert r.returncode == 0 and "--kind" in r.stdout and "Exit status" in r.stdout
    assert all(f.name in r.stdout and f.file_name in r.stdout for f in FAMILIES.values())
    assert "--tiny" not in r.stdout


def test_no_hidden_tiny_flag(files):
    r = _run(files["clip"], "--kind", "clip", "--tiny")
    assert r.returncode == 2 and "unrecognized arguments: --tiny" in r.stderr


def test_all_tiny_kinds_load(files):
    """Every family's towers load its tiny file with no missing or unexpected key."""
    for kind, path in files.items():
        result = _check_tiny(path, kind)
        assert result.status == 0, (kind, result.summary())
        assert [t.tower for t in result.towers] == list(FAMILIES[kind].towers)


def test_tiny_clip_ok(files):
    lines = []
    result = _check_tiny(files["clip"], "clip", log=lines.append)
    out = "\n".join(lines + [result.summary(verbose=True)])
    assert result.status == 0 and result.format == "torchscript", out
    assert "missing 0, unexpected 0" in out and "text tower" in out and "(truncated)" in out
    assert "entries, read in" in lines[0] and "built custom-size clip encoders" in lines[1]
    assert "OK: 0 missing, 0 unexpected" in out and "ignored (other tower" in out


def test_wrong_kind_status_1_and_names_the_file_type(files):
    result = _check_tiny(files["clip"], "siglip")
    out = result.summary(max_names=2)
    assert result.status == 1
    assert "FAILED" in out and "OpenAI CLIP archive" in out and "more" in out


def test_unknown_kind_or_tower(files):
    with pytest.raises(ValueError, match="kind"):
        check_pretrained(files["clip"], "vit")
    with pytest.raises(ValueError, match="tower"):
        check_pretrained(files["dinov2"], "dinov2", encoder_kwargs={"text": {}})


def test_unreadable_exits_2(tmp_path, files):
    with pytest.raises(CheckpointError, match="absent.pth"):
        check_pretrained(str(tmp_path / "absent.pth"), "dinov2")
    r = _run(str(tmp_path / "absent.pth"), "--kind", "dinov2")
    assert r.returncode == 2 and "absent.pth" in r.stderr and "Traceback" not in r.stderr
    data = open(files["eva02"], "rb").read()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 3])
    r = _run(str(trunc), "--kind", "eva02")
    assert r.returncode == 2 and "trunc.pt" in r.stderr and "Traceback" not in r.stderr
