"""One ``error:`` line per failure (mfuser.utils.cli.guarded_main, describe_error)."""
import errno

import pytest

from mfuser.utils.cli import UsageError, describe_error, guarded_main


def _tool(exc):
    @guarded_main
    def main(argv=None):
        raise exc
    return main


@pytest.mark.parametrize("exc, code, text", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.png"), 1,
     "error: No such file or directory: '/data/x.png'"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/model.pth"), 1,
     "error: disk full (no space left on device) while writing '/out/model.pth'"),
    (RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/3: "
                  "file write failed"), 1, "error: RuntimeError: [enforce fail"),
    (KeyError("dataset 'x' is not registered"), 1, "error: dataset 'x' is not registered"),
    (UsageError("--input matched no files"), 2, "error: --input matched no files"),
    (ValueError("line one\n  line two"), 1, "error: line one line two"),
])
def test_exceptions_become_one_error_line(capsys, exc, code, text):
    assert _tool(exc)([]) == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(text), err


def test_disk_full_is_named_even_when_a_library_wraps_it(capsys):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from inner
    except RuntimeError as wrapped:
        exc = wrapped
    assert _tool(exc)([]) == 1
    assert capsys.readouterr().err.strip() == "error: disk full (no space left on device)"


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError):
        _tool(ValueError("boom"))(["--debug"])
    monkeypatch.setenv("MFUSER_DEBUG", "1")
    with pytest.raises(ValueError):
        _tool(ValueError("boom"))([])


def test_unexpected_errors_keep_their_type_and_say_how_to_see_more():
    line = describe_error(ZeroDivisionError("division by zero"), expected=False)
    assert line.startswith("error: ZeroDivisionError: division by zero") and "--debug" in line


def test_an_error_from_a_loader_worker_keeps_the_original_line_not_the_traceback():
    msg = ("Caught UnidentifiedImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
           "last):\n  File \"x.py\", line 1, in f\n    g()\nPIL.UnidentifiedImageError: cannot identify image file "
           "'/d/a.png'")
    line = describe_error(OSError(msg))
    assert line == ("error: PIL.UnidentifiedImageError: cannot identify image file '/d/a.png' "
                    "(Caught UnidentifiedImageError in DataLoader worker process 0.)")
