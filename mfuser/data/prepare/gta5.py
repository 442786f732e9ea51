"""GTA5: convert the Cityscapes-id labels ``ROOT/labels/<name>.png`` into ``ROOT/labels/<name>_labelTrainIds.png``
(sub-folders such as ``labels/train`` are mirrored) and write the rare-class statistics to
``ROOT/rcs_class_stats.json``.

Each label is paired with ``ROOT/images/<name>.png``. A few GTA5 labels differ in size from their image:
they are listed in the summary and their trainId label is resized (nearest neighbour) to the image size, so
that image and label align in training (the original label file is left unchanged); a label whose height and
width are swapped is refused. Ids outside the Cityscapes id table are an error. Labels without an
image (or images without a label) are an error unless --allow-unpaired.

    python datasets/prepare_gta5.py datasets/gta [--workers N] [--overwrite] [--allow-unpaired]
"""

import os

from mfuser.data.datasets.common import DatasetNotFoundError, list_files
from mfuser.data.rcs_stats import RCS_STATS_FILENAME

from . import Job, convert_labels, make_parser, print_summary, write_stats

DST_SUFFIX = "_labelTrainIds.png"


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--allow-unpaired", action="store_true", help="skip (and list) labels without images")
    args = parser.parse_args(argv)
    images_dir, labels_dir = os.path.join(args.root, "images"), os.path.join(args.root, "labels")
    for d in (images_dir, labels_dir):
        if not os.path.isdir(d):
            raise DatasetNotFoundError(f"GTA5: expected the folder {d} (the GTA5 images and labels unpacked in ROOT)")
    labels = list_files(labels_dir, ".png", exclude_suffixes=(DST_SUFFIX,))
    images = list_files(images_dir, ".png")
    no_image, no_label = sorted(set(labels) - set(images)), sorted(set(images) - set(labels))
    unpaired = [f"label without image: {labels[k]}" for k in no_image] + [
        f"image without label: {images[k]}" for k in no_label
    ]
    if unpaired and not args.allow_unpaired:
        for line in unpaired[:20]:
            print("  " + line)
        print(f"GTA5: {len(no_image)} label(s) without an image and {len(no_label)} image(s) without a label; "
              "nothing converted. Use --allow-unpaired to convert the pairs only.")  # fmt: skip
        return 1
    jobs = [Job(labels[k], labels[k][:-4] + DST_SUFFIX, image=images[k], resize_to_image=True)
            for k in sorted(set(labels) & set(images))]  # fmt: skip
    if not jobs:
        print(f"GTA5: no label/image pairs under {labels_dir} and {images_dir}")
        return 1
    results = convert_labels(jobs, "cityscapes_id", workers=args.workers, overwrite=args.overwrite, want_counts=True,
                             desc="gta5")  # fmt: skip
    failures = print_summary("gta5", results)
    if unpaired:
        print(f"  {len(unpaired)} unpaired file(s) left out (--allow-unpaired):")
        for line in unpaired[:20]:
            print("    " + line)
    write_stats(os.path.join(args.root, RCS_STATS_FILENAME), results, split="train")
    return 1 if failures else 0

