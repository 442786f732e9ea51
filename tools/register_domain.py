#!/usr/bin/env python
"""Register a folder of images + labels as a target domain by name, list the catalogue, remove an entry.

    python tools/register_domain.py NAME --images DIR --labels DIR [--label-format trainid] \
        [--image-suffix .jpg] [--label-suffix .png] [--overwrite]
    python tools/register_domain.py --list
    python tools/register_domain.py --remove NAME

Adding checks the folder on the spot, as the evaluation will read it: every image has a label and every label an
image (paired by relative path once the suffixes are removed), each label has its image's height and width, and
holds only values of its label format; then it prints the pixels and images per class and writes the entry
``$DETECTRON2_DATASETS/mfuser_domains/NAME.json`` (``DETECTRON2_DATASETS`` defaults to ``datasets``, relative to
the current folder) atomically. From then on ``import mfuser.data`` registers NAME, so every config takes
``'dataloader.targets=[NAME]'`` (``--eval-only``, evaluation during training, ``tools/demo.py --dataset NAME``).
Entry format and label formats: :mod:`mfuser.data.catalogue`, datasets/README.md.

Label formats: ``trainid`` (PNG values are the 19 Cityscapes trainIds, 255 = ignore), ``cityscapes_id``
(Cityscapes / GTA5 ``*_labelIds.png``), ``mapillary_v12`` (Mapillary Vistas v1.2 labels), ``palette`` (Cityscapes
class colours). The image suffix defaults to the one image type found under ``--images``.

Exit status: 0; 2 for a usage error (a missing folder, a name that clashes with a built-in dataset, an entry that
exists without ``--overwrite``, an unknown entry to remove); 1 when the folder fails the checks (nothing is written).
One ``error: ...`` line; ``--debug`` shows the traceback.
"""
import argparse
import os
import sys
from dataclasses import replace

from mfuser.utils.cli import UsageError, add_debug_argument, guarded_main

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def get_parser() -> argparse.ArgumentParser:
    from mfuser.data.labels import LABEL_FORMATS

    p = argparse.ArgumentParser(prog="tools/register_domain.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="NAME", help="dataset name to register (e.g. dashcam_val)")
    p.add_argument("--images", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--labels", metavar="DIR", help="folder of label PNGs (same relative paths as the images)")
    p.add_argument("--label-format", default="trainid", choices=list(LABEL_FORMATS),
                   help="what the label values mean (default: trainid)")
    p.add_argument("--image-suffix", default=None, metavar="SUFFIX",
                   help="file-name ending of the images, removed to pair (default: the one image type found)")
    p.add_argument("--label-suffix", default=".png", metavar="SUFFIX",
                   help="file-name ending of the labels, removed to pair (default: .png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing entry of the same name")
    p.add_argument("--list", action="store_true", help="list the catalogue (and what is wrong with bad entries)")
    p.add_argument("--remove", metavar="NAME", default=None, help="delete the entry NAME from the catalogue")
    add_debug_argument(p)
    return p


def detect_image_suffix(folder: str) -> str:
    """The one image file extension found under ``folder`` (recursively), as written (e.g. ``.JPG``)."""
    found = set()
    for _, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.update(os.path.splitext(f)[1] for f in files
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
    if len(found) != 1:
        what = f"several image types ({', '.join(sorted(found))})" if found else "no image files"
        raise UsageError(f"--images {folder}: {what}; give the image file ending with --image-suffix")
    return found.pop()


def add(args) -> int:
    from mfuser.data.catalogue import CatalogueError, new_entry, register_catalogue, scan_domain, write_entry

    for opt, folder in (("--images", args.images), ("--labels", args.labels)):
        if not folder:
            raise UsageError(f"{opt} DIR is required to register {args.name!r}")
        if not os.path.isdir(folder):
            raise UsageError(f"{opt}: no such folder: {folder!r}")
    suffix = args.image_suffix or detect_image_suffix(args.images)
    try:
        entry = new_entry(args.name, args.images, args.labels, image_suffix=suffix, label_suffix=args.label_suffix,
                          label_format=args.label_format)
    except ValueError as e:  # bad or reserved name, empty suffix
        raise UsageError(str(e)) from None
    if os.path.exists(entry.path) and not args.overwrite:
        raise UsageError(f"dataset {entry.name!r} is already in the catalogue ({entry.path}); pass --overwrite to "
                         "replace it or choose another name")
    try:
        summary = scan_domain(entry, progress=sys.stderr.isatty())
    except CatalogueError as e:
        raise CatalogueError(f"{str(e).rstrip('. ')}. Nothing was written.") from None
    print(f"{entry.name}: {summary.num_pairs} image/label pairs, label format {entry.label_format!r}, "
          f"image suffix {entry.image_suffix!r}, label suffix {entry.label_suffix!r}")
    print(summary.table())
    absent = summary.absent_classes()
    if absent:
        print(f"note: {len(absent)} class(es) have no pixel, so their IoU is left out of this domain's mIoU: "
              f"{', '.join(absent)}")
    write_entry(replace(entry, num_images=summary.num_pairs), overwrite=args.overwrite)
    register_catalogue()
    root = os.environ.get("DETECTRON2_DATASETS")
    print(f"wrote {entry.path}")
    print(f"registered {entry.name!r} for every tool run with "
          + (f"DETECTRON2_DATASETS={root}" if root else "DETECTRON2_DATASETS unset, from this folder"))
    print(f"evaluate: python tools/lazyconfig_train_net.py --config-file CONFIG --eval-only "
          f"train.init_checkpoint=CHECKPOINT 'dataloader.targets=[{entry.name}]'")
    return 0


def list_catalogue() -> int:
    from tabulate import tabulate

    from mfuser.data.catalogue import CatalogueError, catalogue_dir, read_catalogue

    entries, problems = read_catalogue()
    rows = []
    for name, entry in entries.items():
        try:
            entry.check_folders()
            status = "ok"
        except CatalogueError:
            gone = [k for k, d in (("images", entry.images), ("labels", entry.labels)) if not os.path.isdir(d)]
            status = f"{' and '.join(gone)} folder missing"
        rows.append([name, entry.label_format, entry.num_images, entry.images, entry.labels, status])
    for name, problem in problems.items():
        rows.append([name, "", "", "", "", f"bad entry: {problem}"])
    if not rows:
        print(f"the catalogue {catalogue_dir()} is empty")
        return 0
    rows.sort(key=lambda r: r[0])
    print(f"catalogue {catalogue_dir()}:")
    print(tabulate(rows, headers=["name", "label format", "pairs", "images", "labels", "status"], tablefmt="simple"))
    return 0


def remove(name: str) -> int:
    from mfuser.data.catalogue import CatalogueError, remove_entry

    try:
        path = remove_entry(name)
    except CatalogueError as e:
        raise UsageError(str(e)) from None
    print(f"removed {name!r} ({path})")
    return 0


@guarded_main
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    modes = [m for m, on in (("NAME", args.name), ("--list", args.list), ("--remove", args.remove)) if on]
    if len(modes) != 1:
        raise UsageError("give exactly one of NAME --images DIR --labels DIR, --list or --remove NAME"
                         + (f" (got {' and '.join(modes)})" if modes else ""))
    if args.list:
        return list_catalogue()
    if args.remove:
        return remove(args.remove)
    return add(args)


if __name__ == "__main__":
    sys.exit(main())
