#!/usr/bin/env python
"""SYNTHIA-RAND-CITYSCAPES: convert the 16-bit labels ``GT/LABELS/<name>.png`` (class id in the R channel)
to ``GT/LABELS/<name>_labelTrainIds.png`` with the mapping of ``mfuser.data.classes.SYNTHIA_ID_TO_TRAINID``,
and write the rare-class statistics to ``ROOT/rcs_class_stats.json``. ROOT may also hold ``RAND_CITYSCAPES/``.

    python datasets/prepare_synthia.py datasets/synthia [--workers N] [--overwrite]
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.synthia import main

if __name__ == "__main__":
    sys.exit(run_main(main))
