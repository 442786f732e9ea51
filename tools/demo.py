#!/usr/bin/env python
"""Segment images, a video or a webcam stream with a LazyConfig model and write colour overlays (and optionally
trainId label PNGs).

    python tools/demo.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
        --input 'street/*.jpg' --output out/ train.init_checkpoint=model.pth [--save-labels]
    python tools/demo.py --config-file ... --video-input drive.mp4 --output drive_overlay.mp4 train.init_checkpoint=...
    python tools/demo.py --config-file ... --webcam --output cam.mp4 train.init_checkpoint=...

Options and behaviour: ``python tools/demo.py --help``, :mod:`mfuser.engine.demo` and docs/demo.md.
"""
import sys

from mfuser.engine.demo import main

if __name__ == "__main__":
    sys.exit(main())
