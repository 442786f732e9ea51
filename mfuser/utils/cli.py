"""Conventions shared by every command line in ``tools/`` and ``datasets/``.

* config overrides are positional ``KEY=VALUE`` arguments (LazyConfig / Hydra syntax: ``null`` is None);
* sizes are written ``HxW`` (height x width) or ``N`` for a square, parsed by :func:`size_hw`;
* exit status 2 for a usage error (bad option, missing input file), 1 for a failure while running, and every
  message a tool prints about it starts with ``error:``: one line, no traceback. ``--debug`` (see
  :func:`add_debug_argument`) or the environment variable ``MFUSER_DEBUG=1`` shows the traceback instead
  (:func:`guarded_main`).
"""
from __future__ import annotations

import argparse
import errno
import functools
import os
import sys

__all__ = [
    "DEBUG_ENV",
    "UsageError",
    "add_debug_argument",
    "debug_requested",
    "describe_error",
    "guarded_main",
    "non_negative_int",
    "positive_int",
    "size_hw",
]

#: Environment variable that makes every tool show the traceback of an error (``MFUSER_DEBUG=1``).
DEBUG_ENV = "MFUSER_DEBUG"


class UsageError(ValueError):
    """The command line itself is wrong (a missing required option or input): exit status 2."""


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug`` (show the traceback of an error instead of one ``error:`` line) to ``parser``."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (same as {DEBUG_ENV}=1)")
    return parser


def debug_requested(argv=None) -> bool:
    """True when ``--debug`` is in ``argv`` (default ``sys.argv[1:]``) or ``MFUSER_DEBUG`` is set to a true value."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return "--debug" in args or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def describe_error(e: BaseException, *, expected: bool = True) -> str:
    """The one line a tool prints for ``e``: ``error: <message>``.

    * ``KeyError``: its message without the quotes ``str(KeyError)`` adds;
    * a full disk (ENOSPC/EDQUOT anywhere in the exception's cause chain, or its text in a library's wrapper):
      ``disk full (no space left on device) while writing FILE``;
    * other ``OSError`` with a file name: ``<strerror>: 'FILE'``;
    * ``expected=False`` (a bug rather than bad input): the exception type is kept and the line says how to see
      the traceback.
    A multi-line message is folded into one line.
    """
    full = _disk_full(e)
    if full is not None:
        where = full.filename if isinstance(full, OSError) else None
        return "error: disk full (no space left on device)" + (f" while writing {where!r}" if where else "")
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, OSError) and e.filename and e.strerror:
        msg = f"{e.strerror}: {e.filename!r}"
    else:
        msg = str(e) or type(e).__name__
    lines = [line.strip() for line in msg.strip().splitlines() if line.strip()]
    if len(lines) > 1 and any("Traceback (most recent call last)" in line for line in lines):
        # an exception re-raised from another process (DataLoader worker, spawned rank) carries the original
        # traceback in its message: keep the original error and where it happened
        msg = f"{lines[-1]} ({lines[0]})"
    else:
        msg = " ".join(lines)
    if not expected:
        msg = f"{type(e).__name__}: {msg} (run with --debug or {DEBUG_ENV}=1 for the traceback)"
    return f"error: {msg}"


def _disk_full(e: BaseException) -> BaseException | None:
    """The exception of ``e``'s cause/context chain that reports a full disk (ENOSPC / EDQUOT, or the text of it in
    a library's wrapper such as torch.save's RuntimeError), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return e
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return e
        e = e.__cause__ or e.__context__
    return None


def guarded_main(main):
    """Decorate a tool's ``main(argv=None) -> int`` so that an exception becomes one ``error:`` line on stderr.

    Exit status: what ``main`` returns; 2 for :class:`UsageError`; 130 for Ctrl-C; 1 for any other exception.
    With ``--debug`` in ``argv`` or ``MFUSER_DEBUG=1`` the exception propagates (full traceback). Every exception
    is reported (its type added when it is not an ``Exception`` a user can fix, see :func:`describe_error`):
    a tool never ends in a traceback by default.
    """

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        debug = debug_requested(argv)
        try:
            return main(argv)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr, flush=True)
            return 130
        except Exception as e:
            if debug:
                raise
            print(describe_error(e, expected=isinstance(e, EXPECTED_ERRORS)), file=sys.stderr, flush=True)
            return 2 if isinstance(e, UsageError) else 1

    return wrapper


#: Exceptions that are bad input a user can fix (printed without their type); anything else is printed with its
#: type and a hint to ``--debug``. Libraries' own error types that mean bad input derive from these (PIL's
#: UnidentifiedImageError is an OSError, omegaconf's errors are ValueError/KeyError/AttributeError subclasses).
EXPECTED_ERRORS = (ValueError, KeyError, OSError, EOFError, LookupError)


def size_hw(text: str) -> tuple[int, int]:
    """argparse type: ``'512'`` -> (512, 512); ``'1024x2048'`` -> (1024, 2048), i.e. height x width."""
    parts = text.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"size must be N or HxW (height x width) with positive integers, got {text!r}")
    return hw


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    parse.__doc__ = f"argparse type: an integer >= {minimum}."
    return parse


positive_int = _int_at_least(1, "positive")
non_negative_int = _int_at_least(0, "non-negative")
