#!/usr/bin/env python
"""Convert a published MFuser checkpoint (official MMSegmentation ``iter_*.pth``) into a Detectron2 checkpoint.

Usage:
    python tools/convert_mfuser_checkpoint.py INPUT OUTPUT [--variant clip|eva02|siglip] [--drop-frozen]
        [--config-file CFG] [--overwrite]

INPUT is the official file (``{'meta', 'state_dict', 'optimizer'}``); its variant is detected from the keys (and
``meta.config``), and ``--variant`` makes a mismatch an error. OUTPUT is ``{"model": state_dict, ...}`` for
``train.init_checkpoint`` of the matching ``configs/mfuser/mfuser_{variant}_vitl_*_512.py`` config. Every key is
mapped and every shape checked against the model of ``configs/common/models/mfuser_{variant}.py`` (or
``--config-file``), built on the meta device (no memory, no pretrained files needed). The report lists what was
mapped, what was dropped on purpose and why; anything unexplained is an error and nothing is written.

By default the frozen encoders (DINOv2, the VLM image and text towers, all stored in the official file) are kept:
the output is self-contained, evaluate it with the pretrained-file paths switched off
(``model.backbone.vfm.weights=null model.backbone.vlm.weights=null model.text_encoder.weights=null``;
the overrides are parsed by Hydra, where ``null`` is None).
``--drop-frozen`` leaves them out (about 3 GB less); the model then loads them from its pretrained files.
See docs/reproduce.md. One "error: ..." line on bad input; exit status 2 when INPUT is missing or OUTPUT exists
(without --overwrite), 1 when the conversion fails (nothing is written then).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from mfuser.utils.cli import add_debug_argument, guarded_main

DEFAULT_CONFIG = "configs/common/models/mfuser_{variant}.py"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("input", help="official MFuser checkpoint (iter_*.pth)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pth)")
    parser.add_argument("--variant", choices=("clip", "eva02", "siglip"),
                        help="expected variant (default: detected from the file)")
    parser.add_argument("--drop-frozen", action="store_true",
                        help="leave the frozen encoder weights out (the model loads its pretrained files)")
    parser.add_argument("--config-file", help=f"LazyConfig defining `model` (default: {DEFAULT_CONFIG})")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def build_meta_model(config_file: str):
    """Instantiate ``model`` of a LazyConfig on the meta device, pretrained-file loading switched off."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    import mfuser.data  # noqa: F401  (registers the datasets whose metadata names the classes)

    cfg = LazyConfig.load(config_file)
    model_cfg = cfg.model
    for node in (model_cfg.backbone.vfm, model_cfg.backbone.vlm, model_cfg.text_encoder):
        if "weights" in node:
            node.weights = None
    if "tokenizer_path" in model_cfg.text_encoder:
        model_cfg.text_encoder.tokenizer_path = None  # only key names and shapes are needed
    with torch.device("meta"):
        return instantiate(model_cfg)


def convert(args) -> None:
    import torch

    from mfuser.engine.official_checkpoint import (
        convert_official_checkpoint,
        detect_variant,
        read_official_checkpoint,
    )
    from mfuser.utils.io import atomic_write

    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pass --overwrite to replace it")
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise ValueError(f"OUTPUT must differ from INPUT ({args.input})")
    t0 = time.time()
    checkpoint = read_official_checkpoint(args.input)
    file_variant = detect_variant(checkpoint["state_dict"], checkpoint.get("meta"), args.input)
    variant = args.variant or file_variant
    config_file = args.config_file or DEFAULT_CONFIG.format(variant=variant)
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file not found: {config_file} (run from the repository root or pass "
                                "--config-file)")
    try:
        model = build_meta_model(config_file)
    except Exception as e:  # noqa: BLE001 - any failure to build the config's model: name the config
        raise ValueError(f"{config_file}: cannot build an MFuser model from its `model` "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    state, report = convert_official_checkpoint(checkpoint, model, source=args.input,
                                                keep_frozen=not args.drop_frozen, variant=variant)
    meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), dict) else {}
    data = {
        "model": state,
        "__author__": "tools/convert_mfuser_checkpoint.py",
        "mfuser_official": {"source": os.path.basename(args.input), "variant": variant,
                            "iter": meta.get("iter"), "frozen_kept": not args.drop_frozen},
    }
    atomic_write(args.output, lambda tmp: torch.save(data, tmp), suffix=".pth")
    print(report.summary())
    size = os.path.getsize(args.output) / 2**20
    print(f"wrote {args.output}: {len(state)} tensors, {size:.1f} MiB ({time.time() - t0:.1f} s); "
          f"load it with the {variant} config: train.init_checkpoint={args.output}")


@guarded_main
def main(argv=None) -> int:
    args = parse_args(argv)
    from mfuser.modeling.encoders.checkpoints import CheckpointError

    usage = not os.path.isfile(args.input) or (os.path.exists(args.output) and not args.overwrite)
    try:
        convert(args)
    except (CheckpointError, FileNotFoundError, FileExistsError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if usage else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
