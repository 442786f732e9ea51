#!/usr/bin/env python
"""GTA5: convert the Cityscapes-id labels ``ROOT/labels/<name>.png`` into ``ROOT/labels/<name>_labelTrainIds.png``
(sub-folders such as ``labels/train`` are mirrored) and write the rare-class statistics to
``ROOT/rcs_class_stats.json``.

Each label is paired with ``ROOT/images/<name>.png``. A few GTA5 labels differ in size from their image:
they are listed in the summary and their trainId label is resized (nearest neighbour) to the image size, so
that image and label align in training (the original label file is left unchanged). Labels without an
image (or images without a label) are an error unless --allow-unpaired.

    python datasets/prepare_gta5.py datasets/gta [--workers N] [--overwrite] [--allow-unpaired]
"""
import sys

from mfuser.data.prepare import run_main
from mfuser.data.prepare.gta5 import main

if __name__ == "__main__":
    sys.exit(run_main(main))
