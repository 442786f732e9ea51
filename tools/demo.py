#!/usr/bin/env python
"""Segment images with a LazyConfig model and write colour overlays (and optionally trainId label PNGs).

    python tools/demo.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
        --input 'street/*.jpg' --output out/ --opts train.init_checkpoint=model.pth [--save-labels]

The vocabulary and colours come from the metadata of the dataset the model's vocabulary is read from
(``--dataset``, default: the first of ``dataloader.targets``). Images are resized like the test mapper
(``--resize LONG SHORT``, default: that dataset's ``dataloader.test_resize`` entry); the model's own
inference (sliding window) runs on the resized image and the result is at the original size.
Unreadable inputs are reported by name and skipped; the exit status is 1 if any failed.
"""
import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    p.add_argument("--input", required=True, nargs="+", help="image files, directories or glob patterns")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--dataset", default=None, help="dataset whose metadata gives class names and colours")
    p.add_argument("--resize", type=int, nargs=2, default=None, metavar=("LONG", "SHORT"),
                   help="keep-ratio test resize (default: dataloader.test_resize of --dataset)")
    p.add_argument("--save-labels", action="store_true", help="also write <name>_labelTrainIds.png")
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY=VALUE")
    return p


def expand_inputs(items):
    """Files from paths, directories (images inside, sorted) and glob patterns; unknown paths are kept so
    that they are reported as failures."""
    files = []
    for item in items:
        if os.path.isdir(item):
            files += sorted(os.path.join(item, f) for f in os.listdir(item)
                            if os.path.isfile(os.path.join(item, f)) and f.lower().endswith(IMAGE_EXTS))
        elif any(c in item for c in "*?["):
            matched = sorted(glob.glob(item, recursive=True))
            files += matched if matched else [item]
        else:
            files.append(item)
    return files


def read_rgb(path):
    """The image as the evaluation loader reads it (detectron2's read_image: EXIF rotation applied)."""
    from mfuser.data.mappers import read_image_checked

    return read_image_checked(path, "RGB")


def draw_overlay(image, labels, metadata, alpha):
    """detectron2 ``Visualizer.draw_sem_seg`` with the metadata colours, plus a legend of present classes."""
    from detectron2.utils.visualizer import Visualizer

    vis = Visualizer(image, metadata)
    out = vis.draw_sem_seg(labels, alpha=alpha).get_image()
    present = [int(c) for c in np.unique(labels) if c < len(metadata.stuff_classes)]
    if not present:
        return out
    row = 16
    legend = np.full((row * len(present) + 4, out.shape[1], 3), 255, np.uint8)
    from PIL import ImageDraw

    canvas = Image.fromarray(legend)
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(present):
        y = 2 + i * row
        draw.rectangle([4, y, 4 + 12, y + 12], fill=tuple(int(v) for v in metadata.stuff_colors[c]))
        draw.text((22, y), metadata.stuff_classes[c], fill=(0, 0, 0))
    return np.concatenate([out, np.asarray(canvas)], axis=0)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if not os.path.isfile(args.config_file):
        print(f"error: --config-file: no such file: {args.config_file!r}", file=sys.stderr)
        return 2
    files = expand_inputs(args.input)
    if not files:
        print(f"error: --input matched no files: {args.input}", file=sys.stderr)
        return 2

    from detectron2.config import LazyConfig
    from detectron2.data import MetadataCatalog
    from tqdm import tqdm

    import mfuser.data  # noqa: F401  (registers datasets)
    from mfuser.engine import MFuserPredictor

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    targets = list(cfg.dataloader.get("targets", []) or [])
    dataset = args.dataset or (targets[0] if targets else None)
    if dataset is None:
        print("error: --dataset is needed (the config has no dataloader.targets)", file=sys.stderr)
        return 2
    from mfuser.evaluation import check_registered

    try:
        check_registered([dataset])
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    metadata = MetadataCatalog.get(dataset)
    resize = args.resize
    if resize is None:
        sizes = cfg.dataloader.get("test_resize", None) or {}
        resize = sizes[dataset] if dataset in sizes else cfg.dataloader.get("test_resize_default", None)
    device = cfg.train.get("device", "cpu")
    if str(device).startswith("cuda"):
        import torch

        device = device if torch.cuda.is_available() else "cpu"
    try:
        predictor = MFuserPredictor(cfg, device=device, resize_to=resize)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    os.makedirs(args.output, exist_ok=True)
    failed = []
    for path in tqdm(files, desc="demo", unit="img"):
        try:
            image = read_rgb(path)
        except Exception as e:  # noqa: BLE001 - any decoding failure: report and skip this input
            failed.append(path)
            tqdm.write(f"skipped {path}: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        labels = predictor(image)["sem_seg"].argmax(0).numpy().astype(np.uint8)
        stem = os.path.splitext(os.path.basename(path))[0]
        Image.fromarray(draw_overlay(image, labels, metadata, args.alpha)).save(
            os.path.join(args.output, f"{stem}_overlay.png"))
        if args.save_labels:
            Image.fromarray(labels).save(os.path.join(args.output, f"{stem}_labelTrainIds.png"))
    done = len(files) - len(failed)
    print(f"{done} image(s) written to {args.output}" + (f"; {len(failed)} failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
