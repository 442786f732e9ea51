#!/usr/bin/env python
"""Plot training curves from ``OUTPUT_DIR/metrics.json`` (written by tools/lazyconfig_train_net.py).

    python tools/plot_metrics.py output/mfuser_eva02_vitl_gta_512 [--out DIR]

Writes ``losses.png`` (total loss, final-set losses, auxiliary sets, score-map loss), ``lr.png`` and, when the
run evaluated, ``miou.png`` (``<domain>/mIoU`` per domain and the average) into ``--out`` (default: OUTPUT_DIR);
see :mod:`mfuser.utils.plots`. One "error: ..." line: exit status 2 without a metrics.json, 1 for a corrupt one.
"""
import argparse
import sys

from mfuser.utils.cli import add_debug_argument, guarded_main
from mfuser.utils.plots import plot_metrics


@guarded_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_dir", help="train.output_dir of a run (holds metrics.json)")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: OUTPUT_DIR)")
    add_debug_argument(p)
    args = p.parse_args(argv)
    try:
        written = plot_metrics(args.output_dir, args.out)
    except FileNotFoundError as e:  # no run there: a usage error
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a corrupt or empty metrics.json
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
