"""Mapillary Vistas: convert the v1.2 labels (palette PNGs; their palette *indices* are the 66 Vistas class
ids) from ``{training,validation}/v1.2/labels/`` or ``{training,validation}/labels/`` to Cityscapes trainIds
in ``ROOT/cityscapes_trainIdLabel/{train,val}/label/<name>.png``.

The id mapping is ``mfuser.data.classes.MAPILLARY_V12_ID_TO_TRAINID`` (the DAFormer/HRDA/MIC standard:
road <- road, lane marking general, manhole; sidewalk <- curb, sidewalk; ...; everything else ignored);
``--mapping FILE.json`` ({"vistas_id": trainId, ...}) replaces it. Ids outside 0..65 are an error; when
``{training,validation}/images/`` exists, every label must have exactly the height and width of its image.
``--half`` also writes ``half/val_img/<name>.jpg`` and ``half/val_label/<name>.png`` at half resolution.

    python datasets/prepare_mapillary.py datasets/mapillary [--workers N] [--overwrite] [--half] [--splits val]
"""

import json
import os

from mfuser.data.datasets.common import DatasetNotFoundError, list_files

from . import Job, convert_labels, make_parser, print_summary, resize_half, run_jobs

SPLITS = {"train": "training", "val": "validation"}


def find_label_dir(root: str, vistas_split: str) -> str:
    for d in (os.path.join(root, vistas_split, "v1.2", "labels"), os.path.join(root, vistas_split, "labels")):
        if os.path.isdir(d):
            return d
    raise DatasetNotFoundError(
        f"Mapillary {vistas_split}: expected the folder {os.path.join(root, vistas_split, 'v1.2', 'labels')} or "
        f"{os.path.join(root, vistas_split, 'labels')} (the Vistas v1.2 release unpacked in ROOT)"
    )


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--half", action="store_true", help="also write the half-resolution val copy (half/)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=sorted(SPLITS))
    parser.add_argument("--mapping", help="JSON file {vistas_id: trainId} replacing the default mapping")
    args = parser.parse_args(argv)
    mapping = None
    if args.mapping:
        with open(args.mapping) as f:
            mapping = {int(k): int(v) for k, v in json.load(f).items()}
    failures = 0
    for split in args.splits:
        src_dir = find_label_dir(args.root, SPLITS[split])
        out_dir = os.path.join(args.root, "cityscapes_trainIdLabel", split, "label")
        srcs = list_files(src_dir, ".png", recursive=False, exclude_suffixes=("_labelTrainIds.png",))
        if not srcs:
            print(f"Mapillary {split}: no label PNGs in {src_dir}")
            failures += 1
            continue
        img_dir = os.path.join(args.root, SPLITS[split], "images")
        if not os.path.isdir(img_dir):
            print(f"Mapillary {split}: note: no folder {img_dir}; the labels are not checked against their images")
        jobs = [Job(p, os.path.join(out_dir, k + ".png"), mapping=mapping,
                    image=os.path.join(img_dir, k + ".jpg") if os.path.isdir(img_dir) else None)
                for k, p in srcs.items()]  # fmt: skip
        results = convert_labels(jobs, "mapillary", workers=args.workers, overwrite=args.overwrite, want_counts=False,
                                 desc=f"mapillary {split}")  # fmt: skip
        failures += print_summary(f"mapillary {split}", results)
        if args.half and split == "val":
            if not os.path.isdir(img_dir):
                raise DatasetNotFoundError(f"Mapillary --half: expected the folder {img_dir}")
            half = os.path.join(args.root, "half")
            todo = [
                (os.path.join(img_dir, k + ".jpg"), r.job.dst, os.path.join(half, "val_img", k + ".jpg"),
                 os.path.join(half, "val_label", k + ".png"), args.overwrite)
                for k, r in zip(srcs, results) if r.status != "failed"
            ]  # fmt: skip
            failures += print_summary(
                "mapillary half val", run_jobs(resize_half, todo, workers=args.workers, desc="half")
            )
    return 1 if failures else 0

