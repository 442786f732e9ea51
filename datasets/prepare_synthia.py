#!/usr/bin/env python
"""Prepare SYNTHIA-RAND-CITYSCAPES for MFuser (see ``--help``).

    python datasets/prepare_synthia.py datasets/synthia [--workers N] [--overwrite]

What it writes and checks: :mod:`mfuser.data.prepare.synthia`.
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.synthia import main

if __name__ == "__main__":
    sys.exit(run_main(main))
