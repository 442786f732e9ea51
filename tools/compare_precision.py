#!/usr/bin/env python
"""Evaluate one checkpoint in fp32 and under bf16 autocast, in one process, and say how far apart they are.

    python tools/compare_precision.py --config-file configs/quickstart/mfuser_tiny_synthetic.py \
        train.init_checkpoint=output/quickstart/model_final.pth [--max-images N] [--threads 1] [--json]

On every target domain of the config (``dataloader.targets``, loaded and resized as the evaluation does), every
image is predicted twice by the same model: in fp32, then under bf16 autocast (what ``train.precision=bf16``
runs, mfuser/engine/precision.py). Each precision's predictions go to its own evaluator. Reported per domain:
``agreement`` (the fraction of output pixels whose predicted label is the same in both), the mIoU of each and
their difference (bf16 - fp32, points), and the time of each pass. Targets of issue 14: agreement >= 99.5 % and
|mIoU difference| <= 0.3 points on every domain. The quickstart config reads its data from
``$MFUSER_SYNTHETIC_ROOT`` (default datasets/synthetic), as the quickstart does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mfuser.utils.cli import UsageError, add_debug_argument, guarded_main, positive_int  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "configs", "quickstart", "mfuser_tiny_synthetic.py")
TARGET_AGREEMENT = 0.995
TARGET_MIOU_DIFF = 0.3
PRECISIONS = ("fp32", "bf16")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/compare_precision.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=QUICKSTART, help="LazyConfig (default: the quickstart's)")
    p.add_argument("--max-images", type=positive_int, default=None, help="first N images of each target (default all)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides; train.init_checkpoint=PATH needed")
    return add_debug_argument(p)


def compare(cfg, model, names, max_images: int | None = None) -> dict:
    """``{domain: {"agreement", "pixels", "mIoU": {fp32, bf16}, "miou_diff", "time_s": {fp32, bf16}}}``."""
    import torch
    from detectron2.data import MetadataCatalog

    from mfuser.engine.defaults import build_target_evaluator, build_target_loader
    from mfuser.engine.precision import resolve_precision
    from mfuser.evaluation import summarize_sem_seg

    device = next(model.parameters()).device
    choices = {p: resolve_precision(p, device) for p in PRECISIONS}
    model.eval()
    out = {}
    for name in names:
        loader = build_target_loader(cfg, name, max_images)
        evaluators = {p: build_target_evaluator(cfg, name) for p in PRECISIONS}
        for e in evaluators.values():
            e.reset()
        same = total = 0
        seconds = dict.fromkeys(PRECISIONS, 0.0)
        with torch.no_grad():
            for inputs in loader:
                labels = {}
                for p, choice in choices.items():
                    start = time.perf_counter()
                    with choice.autocast():
                        outputs = model(inputs)
                    seconds[p] += time.perf_counter() - start
                    outputs = [{**o, "sem_seg": o["sem_seg"].float()} for o in outputs]
                    evaluators[p].process(inputs, outputs)
                    labels[p] = [o["sem_seg"].argmax(0).cpu() for o in outputs]
                for a, b in zip(labels["fp32"], labels["bf16"]):
                    same += int((a == b).sum())
                    total += a.numel()
        miou = {}
        for p, e in evaluators.items():
            miou[p] = summarize_sem_seg(e.evaluate(), MetadataCatalog.get(name).stuff_classes)["mIoU"]
        out[name] = {"agreement": same / max(total, 1), "pixels": total, "mIoU": miou,
                     "miou_diff": miou["bf16"] - miou["fp32"], "time_s": seconds}
    return out


def format_table(results: dict) -> str:
    lines = [f"{'domain':<28} {'agreement':>10} {'mIoU fp32':>10} {'mIoU bf16':>10} {'diff':>7} "
             f"{'fp32 s':>8} {'bf16 s':>8} {'bf16/fp32':>9}"]
    for name, r in results.items():
        t = r["time_s"]
        lines.append(f"{name:<28} {100 * r['agreement']:>9.3f}% {r['mIoU']['fp32']:>10.2f} {r['mIoU']['bf16']:>10.2f} "
                     f"{r['miou_diff']:>+7.2f} {t['fp32']:>8.1f} {t['bf16']:>8.1f} "
                     f"{t['bf16'] / t['fp32'] if t['fp32'] else float('nan'):>9.3f}")
    return "\n".join(lines)


def targets(results: dict) -> dict:
    return {f"agreement>={100 * TARGET_AGREEMENT}%": all(r["agreement"] >= TARGET_AGREEMENT for r in results.values()),
            f"|miou_diff|<={TARGET_MIOU_DIFF}": all(abs(r["miou_diff"]) <= TARGET_MIOU_DIFF for r in results.values())}


@guarded_main
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    from mfuser.engine.checkpoint import MFuserCheckpointer
    from mfuser.engine.defaults import build_model, check_config, load_config, target_names

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(argparse.Namespace(config_file=args.config_file, opts=args.opts))
    if not cfg.train.get("init_checkpoint", ""):
        raise UsageError("a checkpoint is needed: train.init_checkpoint=PATH")
    check_config(cfg, eval_only=True)
    names = target_names(cfg)
    if not names:
        raise UsageError(f"{args.config_file} has no dataloader.targets to evaluate")
    model = build_model(cfg)
    MFuserCheckpointer(model).load(cfg.train.init_checkpoint)
    results = compare(cfg, model, names, args.max_images)
    report = {"config": args.config_file, "checkpoint": cfg.train.init_checkpoint, "threads": torch.get_num_threads(),
              "max_images": args.max_images, "domains": results, "targets": targets(results)}
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(results))
        print("targets: " + ", ".join(f"{k}={v}" for k, v in report["targets"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
