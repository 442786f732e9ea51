"""Cityscapes: write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png`` under
``ROOT/gtFine/<split>/`` (official id -> trainId table; ids outside the table are an error), and the rare-class
statistics of the train split to ``ROOT/rcs_class_stats.json``. When ``ROOT/leftImg8bit/<split>/`` exists, every
label must have exactly the height and width of its ``*_leftImg8bit.png`` image.

    python datasets/prepare_cityscapes.py datasets/cityscapes [--workers N] [--overwrite]
"""

import os

from mfuser.data.datasets.common import DatasetNotFoundError, list_files
from mfuser.data.rcs_stats import RCS_STATS_FILENAME

from . import Job, convert_labels, make_parser, print_summary, write_stats

SRC_SUFFIX, DST_SUFFIX, IMAGE_SUFFIX = "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png", "_leftImg8bit.png"


def main(argv=None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    gt = os.path.join(args.root, "gtFine")
    if not os.path.isdir(gt):
        raise DatasetNotFoundError(f"Cityscapes: expected the folder {gt} (gtFine_trainvaltest.zip unpacked in ROOT)")
    failures = 0
    for split in sorted(os.listdir(gt)):
        split_dir = os.path.join(gt, split)
        if not os.path.isdir(split_dir):
            continue
        srcs = list_files(split_dir, SRC_SUFFIX)
        if not srcs:
            print(f"{split}: no *{SRC_SUFFIX} files, nothing to do")
            continue
        image_dir = os.path.join(args.root, "leftImg8bit", split)
        have_images = os.path.isdir(image_dir)
        if not have_images:
            print(f"{split}: note: no folder {image_dir}; the labels are not checked against their images")
        jobs = [Job(p, p[: -len(SRC_SUFFIX)] + DST_SUFFIX,
                    image=os.path.join(image_dir, k + IMAGE_SUFFIX) if have_images else None)
                for k, p in srcs.items()]  # fmt: skip
        want = split == "train"
        results = convert_labels(
            jobs, "cityscapes_id", workers=args.workers, overwrite=args.overwrite, want_counts=want, desc=split
        )
        failures += print_summary(f"cityscapes {split}", results)
        if want:
            write_stats(os.path.join(args.root, RCS_STATS_FILENAME), results, split="train")
    return 1 if failures else 0

