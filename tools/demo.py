#!/usr/bin/env python
"""Segment images with a LazyConfig model and write colour overlays (and optionally trainId label PNGs).

    python tools/demo.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
        --input 'street/*.jpg' --output out/ train.init_checkpoint=model.pth [--save-labels]

Options and behaviour: ``python tools/demo.py --help`` and :mod:`mfuser.engine.demo`.
"""
import sys

from mfuser.engine.demo import main

if __name__ == "__main__":
    sys.exit(main())
