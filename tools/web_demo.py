#!/usr/bin/env python
"""A local web page (Gradio) to segment a dropped image or short video: overlay next to the input, class legend
with areas, opacity slider, label PNG download. Needs the ``demo`` extra: ``pip install -e '.[demo]'``.

    python tools/web_demo.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
        train.init_checkpoint=model.pth [--port 7860] [--host 127.0.0.1]

Options and behaviour: ``python tools/web_demo.py --help``, :mod:`mfuser.engine.web_demo` and docs/demo.md.
"""
import sys

from mfuser.engine.web_demo import main

if __name__ == "__main__":
    sys.exit(main())
