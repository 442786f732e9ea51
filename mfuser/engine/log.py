"""Logging of a run: the project's, detectron2's and fvcore's loggers to the console and to ``log.txt``.

Why not only :func:`detectron2.utils.logger.setup_logger` (what ``default_setup`` calls): it configures the
``detectron2`` and ``fvcore`` loggers, so the project's own ``mfuser.*`` lines ("Model: ... trainable
parameters", "Resuming the sample stream at ...") went nowhere; it colours the console with ANSI codes even when
stdout is a file or a pipe; it is cached per argument tuple, so a second run in one process (tests, the
quickstart's re-evaluation) adds a second console handler and every line appears twice; and a failed run's
traceback is logged to the console before the command line prints its one ``error:`` line.

Here each call replaces the handlers an earlier call installed, the console is coloured only on a terminal, the
console shows no tracebacks (``log.txt`` keeps them) unless ``debug``, and ``log.txt`` is appended to.
"""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["LOGGER_NAMES", "setup_run_logging"]

#: Loggers a run configures (the project's own first).
LOGGER_NAMES = ("mfuser", "detectron2", "fvcore")

_PLAIN = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"
_MARK = "_mfuser_run_handler"


class _NoTraceback(logging.Formatter):
    """Format with ``inner`` but without the exception / stack text (the console's view of a failure)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_formatter(name: str, color: bool) -> logging.Formatter:
    if not color:
        return logging.Formatter(_PLAIN, datefmt=_DATEFMT)
    from detectron2.utils.logger import _ColorfulFormatter
    from termcolor import colored

    return _ColorfulFormatter(colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s", datefmt=_DATEFMT,
                              root_name=name, abbrev_name="d2" if name == "detectron2" else name)


def setup_run_logging(output_dir: str | None, rank: int = 0, *, debug: bool = False, color: bool | None = None,
                      names=LOGGER_NAMES) -> logging.Logger:
    """Send ``names``' records to stdout (rank 0) and to ``<output_dir>/log.txt`` (``log.txt.rank<r>`` elsewhere).

    Args:
        output_dir: folder of ``log.txt`` (created); None: console only.
        rank: process rank; only rank 0 writes to the console.
        debug: DEBUG level and tracebacks on the console (default: INFO, tracebacks only in ``log.txt``).
        color: ANSI colours on the console; default: only when stdout is a terminal.

    Returns:
        the ``mfuser`` logger.
    """
    color = sys.stdout.isatty() if color is None else color
    level = logging.DEBUG if debug else logging.INFO
    path = None
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "log.txt" + (f".rank{rank}" if rank > 0 else ""))
    for name in names:
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(h)
            h.close()  # a FileHandler closes its file; a console handler leaves stdout open
        logger.setLevel(level)
        logger.propagate = False
        handlers = []
        if rank == 0:
            console = logging.StreamHandler(stream=sys.stdout)
            fmt = _console_formatter(name, color)
            console.setFormatter(fmt if debug else _NoTraceback(fmt))
            handlers.append(console)
        if path:
            fh = logging.FileHandler(path, mode="a", encoding="utf-8")
            fh.setFormatter(logging.Formatter(_PLAIN, datefmt=_DATEFMT))
            handlers.append(fh)
        for h in handlers:
            h.setLevel(level)
            setattr(h, _MARK, True)
            logger.addHandler(h)
    return logging.getLogger(names[0])
