"""mfuser.utils.io: atomic writes keep the usual file modes and never leave a half-written file."""
import json
import os
import stat

import pytest

from mfuser.utils.io import atomic_write, atomic_write_json


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_get_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
    assert _mode(tmp_path / "a.json") == _mode(plain)  # not mkstemp's owner-only 0600
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_a_replaced_file_keeps_its_mode_and_a_failed_write_changes_nothing(tmp_path):
    dst = tmp_path / "b.txt"
    dst.write_text("old")
    os.chmod(dst, 0o640)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("new")

    atomic_write(str(dst), write)
    assert dst.read_text() == "new" and _mode(dst) == 0o640

    def dies(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(str(dst), dies)
    assert dst.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["b.txt"]
