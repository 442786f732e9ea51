"""File writes that never leave a truncated file behind (the one copy used across the project).

:func:`atomic_write` writes to a temporary file in the destination folder, flushes and fsyncs it, then
``os.replace``-s it onto the destination: a crash or a full disk at any point leaves either the old file or the
new one, never half of one (plus, at worst, a ``.tmp-*`` file that the next write does not read).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

__all__ = ["atomic_write", "atomic_write_json"]

# Read once at import (reading the umask means setting it, which is not thread-safe later on).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(dst: str, write_fn: Callable[[str], None], *, suffix: str = "") -> str:
    """Write ``dst`` atomically.

    Args:
        dst: destination path; its folder is created if needed.
        write_fn: ``write_fn(tmp_path)`` writes the whole content to ``tmp_path`` (a path, so that writers that
            take a file name, e.g. ``PIL.Image.save`` or ``torch.save``, work unchanged).
        suffix: suffix of the temporary file (some writers choose the format from it, e.g. ".png").

    Returns:
        ``dst``. On any exception the temporary file is removed and the exception propagates; ``dst`` is untouched.
    """
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as f:  # the writer may not have synced: make the bytes durable before the rename
            os.fsync(f.fileno())
        # mkstemp creates the file owner-only (0600); give it the mode a plain open() would (0666 & ~umask), or
        # keep the mode of the file it replaces
        os.chmod(tmp, os.stat(dst).st_mode & 0o7777 if os.path.exists(dst) else 0o666 & ~_UMASK)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dst


def atomic_write_json(dst: str, obj: Any, **dump_kwargs) -> str:
    """``json.dump(obj)`` to ``dst`` atomically (keyword arguments go to ``json.dump``); returns ``dst``."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, **dump_kwargs)

    return atomic_write(dst, write, suffix=".json")
