#!/usr/bin/env python
"""Prepare Mapillary Vistas for MFuser (see ``--help``).

    python datasets/prepare_mapillary.py datasets/mapillary [--workers N] [--overwrite] [--half] [--splits val]

What it writes and checks: :mod:`mfuser.data.prepare.mapillary`.
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.mapillary import main

if __name__ == "__main__":
    sys.exit(run_main(main))
