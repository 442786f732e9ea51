#!/usr/bin/env python
"""Model-level speed and memory benchmarks of MFuser, each reported as a ratio measured in one process.

    python tools/benchmark.py model --config-file configs/common/models/mfuser_eva02.py [--size 512]
    python tools/benchmark.py slide --config-file configs/common/models/mfuser_eva02.py --size 1024x2048 \
        [--window-batch 6]
    python tools/benchmark.py train-step --config-file configs/common/models/mfuser_eva02.py [--batch 2 --crop 512]

What each subcommand measures, how, and the JSON keys: :mod:`mfuser.utils.benchmark` and docs/benchmarks.md.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the benchmark never downloads anything

from mfuser.utils.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
