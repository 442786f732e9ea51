#!/usr/bin/env python
"""Prepare Cityscapes for MFuser (see ``--help``).

    python datasets/prepare_cityscapes.py datasets/cityscapes [--workers N] [--overwrite]

What it writes and checks: :mod:`mfuser.data.prepare.cityscapes`.
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.cityscapes import main

if __name__ == "__main__":
    sys.exit(run_main(main))
