#!/usr/bin/env python
"""Cityscapes: write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png`` under
``ROOT/gtFine/<split>/`` (official id -> trainId table), and the rare-class statistics of the train split
to ``ROOT/rcs_class_stats.json``.

    python datasets/prepare_cityscapes.py datasets/cityscapes [--workers N] [--overwrite]
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.cityscapes import main

if __name__ == "__main__":
    sys.exit(run_main(main))
