#!/usr/bin/env python
"""Quickstart: the whole MFuser pipeline on a CPU with no downloads, in about five minutes on two cores.

Generates domain-shift street scenes (if absent), trains a tiny MFuser on the source domain, evaluates
it on three shifted target domains next to the majority-class baseline, plots the training curves and
writes demo overlays for a few target images.

Usage:
    python tools/quickstart.py [--output-dir output/quickstart] [--data-root datasets/synthetic]
        [--overwrite] [--threads N] [--precision auto|fp32|bf16] [KEY=VALUE ...]

``--precision`` (default auto: bf16 autocast for training and evaluation where the CPU computes bf16 natively,
fp32 elsewhere; see mfuser/engine/precision.py) sets ``train.precision``; the choice is printed at the start and
recorded in results.json.

Re-running with the same output directory resumes an interrupted run (from its last checkpoint) or, for
a finished run, only re-evaluates. A directory that holds anything else is refused unless --overwrite.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time

from mfuser.utils.cli import add_debug_argument, guarded_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "quickstart", "mfuser_tiny_synthetic.py")
MARKER = ".mfuser_quickstart.json"
DEMO_IMAGES_PER_DOMAIN = 2


def parse_args(argv=None):
    from mfuser.engine.precision import PRECISION_CHOICES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output-dir", default=os.path.join("output", "quickstart"), help="run directory")
    p.add_argument("--data-root", default=os.path.join("datasets", "synthetic"), help="generated data root")
    p.add_argument("--num-source", type=int, default=400, help="generated source images")
    p.add_argument("--num-target", type=int, default=100, help="generated images per target domain")
    p.add_argument("--overwrite", action="store_true", help="replace an output directory that is not a quickstart run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores). On a machine busy with other work use 1:\n"
                        "OpenMP threads competing with other processes slow training down many times")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="compute precision of training and evaluation (train.precision): auto (the config's default:\n"
                        "bf16 on a CPU with native bf16, else fp32), fp32 or bf16")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE overrides of the quickstart config")
    add_debug_argument(p)
    return p.parse_args(argv)


def train_overrides(args, out: str) -> list[str]:
    """The config overrides of the run: output folder, in-process loaders, ``--precision``, then the user's."""
    opts = [f"train.output_dir={out}", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
    if args.precision is not None:
        opts.append(f"train.precision={args.precision}")
    return opts + list(args.opts)


def prepare_output_dir(path: str, overwrite: bool) -> bool:
    """Return True when ``path`` holds an earlier quickstart run (to resume); refuse foreign content."""
    if os.path.isdir(path) and os.listdir(path):
        if os.path.exists(os.path.join(path, MARKER)):
            return True
        if not overwrite:
            raise FileExistsError(
                f"--output-dir {path} exists and is not a quickstart run; pass --overwrite to replace it "
                "or choose another directory"
            )
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, MARKER), "w") as f:
        json.dump({"config": os.path.relpath(CONFIG, REPO)}, f)
    return False


def baseline_rows(data_root: str, targets: dict) -> dict:
    """Majority-class baseline (predict the most frequent source class everywhere) per target dataset."""
    from detectron2.data import DatasetCatalog

    from mfuser.evaluation.baselines import class_histogram, majority_class_baseline

    source_hist = class_histogram([d["sem_seg_file_name"] for d in DatasetCatalog.get(targets["source"])])
    return {
        name: majority_class_baseline(source_hist, class_histogram([d["sem_seg_file_name"] for d in
                                                                    DatasetCatalog.get(name)]))
        for name in targets["targets"]
    }


def format_summary(results: dict, baselines: dict) -> str:
    names = list(baselines)
    lines = [f"{'domain':<28} {'mIoU':>7} {'mAcc':>7} {'majority-class mIoU':>21} {'ratio':>7}"]
    for name in names:
        r, b = results[name], baselines[name]
        ratio = r["mIoU"] / b["mIoU"] if b["mIoU"] > 0 else float("inf")
        lines.append(f"{name:<28} {r['mIoU']:>7.2f} {r['mACC']:>7.2f} {b['mIoU']:>21.2f} {ratio:>6.1f}x")
    mean = sum(results[n]["mIoU"] for n in names) / len(names)
    mean_b = sum(baselines[n]["mIoU"] for n in names) / len(names)
    lines.append(f"{'mean over targets':<28} {mean:>7.2f} {'':>7} {mean_b:>21.2f} {mean / mean_b:>6.1f}x")
    return "\n".join(lines)


@guarded_main
def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mfuser.data.synthetic import generate_all

    # 1. data
    print(f"[quickstart] data: {args.data_root}", flush=True)
    try:
        generate_all(args.data_root, num_source=args.num_source, num_target=args.num_target,
                     workers=max(1, os.cpu_count() or 1))
    except FileExistsError as e:
        print(f"error: --data-root: {e}", file=sys.stderr)
        return 2
    os.environ["MFUSER_SYNTHETIC_ROOT"] = os.path.abspath(args.data_root)
    print(f"[quickstart] data ready ({time.time() - start:.0f} s)", flush=True)
    train_start = time.time()

    # 2. output directory
    out = os.path.abspath(args.output_dir)
    try:
        resume = prepare_output_dir(out, args.overwrite)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if resume:
        print(f"[quickstart] resuming the run in {out}", flush=True)

    # 3. train + evaluate (the evaluation hook runs after the last iteration)
    from detectron2.config import LazyConfig

    from mfuser.engine.defaults import CLEAR_ERRORS, format_error, run_train_net
    from mfuser.engine.overrides import apply_overrides

    opts = train_overrides(args, out)
    train_args = argparse.Namespace(config_file=CONFIG, resume=True, eval_only=False, opts=opts, num_gpus=1,
                                    num_machines=1, machine_rank=0, dist_url="auto")
    try:
        run_train_net(train_args)
    except CLEAR_ERRORS as e:
        print(format_error(e), file=sys.stderr)
        return 1
    train_time = time.time() - train_start

    # 4. summary table with the majority-class baseline
    cfg = apply_overrides(LazyConfig.load(CONFIG), opts)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    targets = {"source": cfg.dataloader.train.names, "targets": list(cfg.dataloader.targets)}
    baselines = baseline_rows(args.data_root, targets)
    summary = format_summary(results, baselines)
    with open(os.path.join(out, "quickstart_summary.json"), "w") as f:
        json.dump({"results": results, "majority_class_baseline": baselines}, f, indent=2)

    # 5. plots and demo overlays
    from detectron2.data import DatasetCatalog

    from mfuser.engine import MFuserPredictor
    from mfuser.engine.demo import run_demo
    from mfuser.utils.plots import plot_metrics

    for path in plot_metrics(out):
        print(path)
    final = os.path.join(out, "model_final.pth")
    demo_dir = os.path.join(out, "demo")
    for name in targets["targets"]:
        files = [d["file_name"] for d in DatasetCatalog.get(name)[:DEMO_IMAGES_PER_DOMAIN]]
        predictor = MFuserPredictor(cfg, dataset=name, weights=final)
        failed = run_demo(predictor, files, os.path.join(demo_dir, name))
        print(f"{len(files) - len(failed)} image(s) written to {os.path.join(demo_dir, name)}")

    print("\n[quickstart] target-domain results (tiny MFuser trained on the source domain):")
    print(summary)
    precision = results.get("precision") or {}
    print(f"\n[quickstart] done in {time.time() - start:.0f} s (training + evaluation {train_time:.0f} s, "
          f"precision {precision.get('name', '?')}: {precision.get('reason', 'not recorded')})")
    print(f"  run directory     {out}")
    print(f"  results           {os.path.join(out, 'results.json')}, {os.path.join(out, 'quickstart_summary.json')}")
    print(f"  metrics / curves  {os.path.join(out, 'metrics.json')}, {', '.join(sorted(glob.glob(out + '/*.png')))}")
    print(f"  demo overlays     {demo_dir}")
    print(f"  checkpoint        {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
