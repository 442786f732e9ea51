"""Conventions shared by every command line in ``tools/`` and ``datasets/``.

* config overrides are positional ``KEY=VALUE`` arguments (LazyConfig / Hydra syntax: ``null`` is None);
* sizes are written ``HxW`` (height x width) or ``N`` for a square, parsed by :func:`size_hw`;
* exit status 2 for a usage error (bad option, missing input file), 1 for a failure while running, and every
  message a tool prints about it starts with ``error:``.
"""
from __future__ import annotations

import argparse

__all__ = ["non_negative_int", "positive_int", "size_hw"]


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
