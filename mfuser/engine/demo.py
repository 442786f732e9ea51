"""Segment image files and write colour overlays: the logic behind ``tools/demo.py`` (and the quickstart's demo).

    python tools/demo.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py \
        --input 'street/*.jpg' --output out/ train.init_checkpoint=model.pth [--save-labels]

The vocabulary and colours come from the metadata of ``--dataset`` (default: the first of ``dataloader.targets``);
images are resized like that dataset's test loader (``--resize LONG SHORT`` overrides the keep-ratio edge sizes);
the model's own inference (sliding window) runs on the resized image and the result is at the original size
(:class:`mfuser.engine.MFuserPredictor`). Unreadable inputs are reported by name and skipped; the exit status is 1
if any failed, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from typing import Iterable, List, Sequence

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTS", "expand_inputs", "get_parser", "main", "run_demo"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]]*=")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    p.add_argument("--input", required=True, nargs="+", help="image files, directories or glob patterns")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--dataset", default=None, help="dataset whose metadata gives class names and colours")
    p.add_argument("--resize", type=int, nargs=2, default=None, metavar=("LONG", "SHORT"),
                   help="keep-ratio test resize (default: dataloader.test_resize of --dataset)")
    p.add_argument("--save-labels", action="store_true", help="also write <name>_labelTrainIds.png")
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                   help="config overrides KEY=VALUE (alias of the positional overrides)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as in the other tools")
    return p


def expand_inputs(items: Iterable[str]) -> List[str]:
    """Files from paths, directories (images inside, sorted) and glob patterns; unknown paths are kept so that
    they are reported as failures."""
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


def run_demo(predictor, files: Sequence[str], output: str, *, alpha: float = 0.6, save_labels: bool = False,
             progress: bool = True) -> List[str]:
    """Predict every file and write ``<stem>_overlay.png`` (and ``<stem>_labelTrainIds.png``) into ``output``.

    Args:
        predictor: an :class:`mfuser.engine.MFuserPredictor` with metadata (``predictor.metadata``).
        files: image paths; unreadable ones are reported on stderr and skipped.

    Returns:
        the files that failed.
    """
    from tqdm import tqdm

    from mfuser.data.mappers import read_image_checked
    from mfuser.utils.visualizer import draw_overlay

    os.makedirs(output, exist_ok=True)
    failed = []
    for path in tqdm(files, desc="demo", unit="img", disable=not progress):
        try:
            image = read_image_checked(path, "RGB")  # as the evaluation loader reads it (EXIF rotation applied)
        except Exception as e:  # noqa: BLE001 - any decoding failure: report and skip this input
            failed.append(path)
            tqdm.write(f"skipped {path}: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        labels = predictor(image)["sem_seg"].argmax(0).numpy().astype(np.uint8)
        stem = os.path.splitext(os.path.basename(path))[0]
        Image.fromarray(draw_overlay(image, labels, predictor.metadata, alpha)).save(
            os.path.join(output, f"{stem}_overlay.png"))
        if save_labels:
            Image.fromarray(labels).save(os.path.join(output, f"{stem}_labelTrainIds.png"))
    return failed


def main(argv=None) -> int:
    """The ``tools/demo.py`` command line; returns the exit status."""
    args = get_parser().parse_args(argv)
    # "--input a.png KEY=VALUE": argparse gives the override to --input (nargs="+"); a KEY=VALUE that is not a
    # file is an override wherever it stands
    moved = [item for item in args.input if _OVERRIDE.match(item) and not os.path.exists(item)]
    args.input = [item for item in args.input if item not in moved]
    args.overrides = [*moved, *args.overrides]
    if not os.path.isfile(args.config_file):
        print(f"error: --config-file: no such file: {args.config_file!r}", file=sys.stderr)
        return 2
    files = expand_inputs(args.input)
    if not files:
        print(f"error: --input matched no files: {args.input}", file=sys.stderr)
        return 2

    import torch
    from detectron2.config import LazyConfig

    import mfuser.data  # noqa: F401  (registers datasets)
    from mfuser.evaluation import check_registered

    from .predictor import MFuserPredictor

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), [*args.overrides, *args.opts])
    targets = list(cfg.dataloader.get("targets", []) or [])
    dataset = args.dataset or (targets[0] if targets else None)
    if dataset is None:
        print("error: --dataset is needed (the config has no dataloader.targets)", file=sys.stderr)
        return 2
    try:
        check_registered([dataset])
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    device = str(cfg.train.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    try:
        predictor = MFuserPredictor(cfg, dataset=dataset, device=device, resize_to=args.resize)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = run_demo(predictor, files, args.output, alpha=args.alpha, save_labels=args.save_labels)
    done = len(files) - len(failed)
    print(f"{done} image(s) written to {args.output}" + (f"; {len(failed)} failed: {failed}" if failed else ""))
    return 1 if failed else 0
