#!/usr/bin/env python
"""Prepare GTA5 for MFuser (see ``--help``).

    python datasets/prepare_gta5.py datasets/gta [--workers N] [--overwrite] [--allow-unpaired]

What it writes and checks: :mod:`mfuser.data.prepare.gta5`.
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.gta5 import main

if __name__ == "__main__":
    sys.exit(run_main(main))
