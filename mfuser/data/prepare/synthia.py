"""SYNTHIA-RAND-CITYSCAPES: convert the 16-bit labels ``GT/LABELS/<name>.png`` (class id in the R channel)
to ``GT/LABELS/<name>_labelTrainIds.png`` with the mapping of ``mfuser.data.classes.SYNTHIA_ID_TO_TRAINID``,
and write the rare-class statistics to ``ROOT/rcs_class_stats.json``. ROOT may also hold ``RAND_CITYSCAPES/``.

    python datasets/prepare_synthia.py datasets/synthia [--workers N] [--overwrite]
"""

import os

from mfuser.data.datasets.common import list_files
from mfuser.data.datasets.synthia import synthia_base
from mfuser.data.rcs_stats import RCS_STATS_FILENAME

from . import Job, convert_labels, make_parser, print_summary, write_stats

DST_SUFFIX = "_labelTrainIds.png"


def main(argv=None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    labels_dir = os.path.join(synthia_base(args.root), "GT", "LABELS")
    srcs = list_files(labels_dir, ".png", exclude_suffixes=(DST_SUFFIX,))
    if not srcs:
        print(f"SYNTHIA: no label PNGs under {labels_dir}")
        return 1
    jobs = [Job(p, p[:-4] + DST_SUFFIX) for p in srcs.values()]
    results = convert_labels(jobs, "synthia", workers=args.workers, overwrite=args.overwrite, want_counts=True,
                             desc="synthia")  # fmt: skip
    failures = print_summary("synthia", results)
    write_stats(os.path.join(args.root, RCS_STATS_FILENAME), results, split="train")
    return 1 if failures else 0

