"""Generate the synthetic street-scene domains (one source, three targets) under ROOT.

Writes ``ROOT/source`` (GTA5 layout), ``ROOT/target_cityscapes`` (Cityscapes val layout),
``ROOT/target_bdd`` (BDD100K 10k val layout) and ``ROOT/target_mapillary`` (Mapillary val layout);
see :mod:`mfuser.data.synthetic` for the scenes and the domain shifts. Deterministic per ``--seed``.

Re-running with the same arguments skips finished domains and regenerates an interrupted one; a ROOT
with other content is refused unless ``--overwrite`` (which replaces only the generated folders).

Example::

    python datasets/generate_synthetic.py datasets/synthetic --num-source 400 --num-target 100 --workers 2
    python -m mfuser.data.synthetic.cli datasets/synthetic   # the same
"""

import argparse
import sys
import time

from mfuser.utils.cli import add_debug_argument, guarded_main, positive_int, size_hw

from .generate import generate_all

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("root", metavar="ROOT", help="output directory (one sub-folder per domain)")
    p.add_argument("--num-source", type=positive_int, default=400, help="images in the source domain (default 400)")
    p.add_argument("--num-target", type=positive_int, default=100, help="images in each target domain (default 100)")
    p.add_argument("--size", type=size_hw, default=(256, 512),
                   help="image size HxW, height x width, as every tool writes sizes (default 256x512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace the generated folders of a non-empty ROOT")
    return add_debug_argument(p)


@guarded_main
def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status (2: ROOT refused)."""
    args = get_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        roots = generate_all(
            args.root,
            num_source=args.num_source,
            num_target=args.num_target,
            size=(args.size[1], args.size[0]),  # generate_all takes (width, height)
            seed=args.seed,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except (FileExistsError, NotADirectoryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Synthetic domains ready in {time.perf_counter() - t0:.1f}s:")
    for domain, root in roots.items():
        print(f"  {domain:18s} {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
