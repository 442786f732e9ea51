#!/usr/bin/env python
"""Parameter counts (total / trainable per module) and FLOPs of an MFuser LazyConfig model.

Usage:
    python tools/analyze_model.py --config-file configs/common/models/mfuser_eva02.py [--json]
        [--size HxW] [--no-flops] [KEY=VALUE ...]

The config may be a model config (top-level ``model``) or a full training config. FLOPs are counted for one
SIZE image in whole-image mode by :mod:`mfuser.utils.flops` (fvcore plus the attention ops its table lacks,
the counter tools/benchmark.py uses); the selective scan (a custom op) is not counted, and it is small next
to the linear layers around it. With ``--no-flops`` the model is built
on the meta device (no memory, seconds). A SigLIP text tokenizer file that is not there does not stop the
parameter count (it only tokenises class names); the FLOP count is then skipped, and the output says why.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import torch
from detectron2.config import LazyConfig, instantiate

from mfuser.engine.overrides import apply_overrides
from mfuser.utils.cli import add_debug_argument, guarded_main, size_hw
from mfuser.utils.flops import image_flops


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config-file", required=True, help="LazyConfig file defining `model`")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--size", type=size_hw, default=(512, 512), help="input size HxW (or N) for the FLOP count")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (parameters only)")
    add_debug_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    return parser.parse_args(argv)


def module_rows(model: torch.nn.Module, depth: int = 2) -> list[dict]:
    """Parameters per module down to ``depth`` levels (only modules that own parameters)."""
    rows = []

    def visit(module, prefix, level):
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        if total:
            rows.append({"module": prefix or "(model)", "params": total, "trainable": trainable})
        if level < depth:
            for name, child in module.named_children():
                visit(child, f"{prefix}.{name}" if prefix else name, level + 1)

    visit(model, "", 0)
    return rows


@guarded_main
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = LazyConfig.load(args.config_file)
    except FileNotFoundError:
        print(f"error: config file not found: {args.config_file}", file=sys.stderr)
        return 2
    cfg = apply_overrides(cfg, args.opts)
    if "model" not in cfg:
        print(f"error: {args.config_file} defines no `model`", file=sys.stderr)
        return 2
    skip_flops = None
    tokenizer = cfg.model.get("text_encoder", {}).get("tokenizer_path", None)
    if tokenizer is not None and not os.path.isfile(str(tokenizer)):
        cfg.model.text_encoder.tokenizer_path = None
        skip_flops = (f"text tokenizer file not found: {tokenizer} (parameters counted without it; FLOPs need it "
                      "to tokenise the class names: pass model.text_encoder.tokenizer_path=/path/to/spiece.model)")
        print(f"analyze_model: note: {skip_flops}", file=sys.stderr)
    meta = args.no_flops or skip_flops is not None
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = instantiate(cfg.model)
    rows = module_rows(model)
    result = {
        "config": args.config_file,
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "modules": rows,
    }
    if skip_flops is not None and not args.no_flops:
        result["flops_skipped"] = skip_flops
    elif not args.no_flops:
        result["flops"], _ = image_flops(model, args.size)
        result["flops_input_size"] = list(args.size)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'module':<40} {'params':>14} {'trainable':>14}")
    for row in rows:
        print(f"{row['module']:<40} {row['params']:>14,} {row['trainable']:>14,}")
    print(f"{'total':<40} {result['total_params']:>14,} {result['trainable_params']:>14,}")
    if "flops" in result:
        h, w = args.size
        print(f"FLOPs at {h}x{w} (fvcore + attention handles, 1 image, whole mode): {result['flops'] / 1e9:.1f} G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
