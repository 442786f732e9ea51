#!/usr/bin/env python
"""Plot training curves from ``OUTPUT_DIR/metrics.json`` (written by tools/lazyconfig_train_net.py).

    python tools/plot_metrics.py output/mfuser_eva02_vitl_gta_512 [--out DIR]

Writes ``losses.png`` (every ``loss*`` / ``total_loss`` series), ``lr.png`` and, when the run evaluated,
``miou.png`` (``<domain>/mIoU`` per domain and the average) into ``--out`` (default: OUTPUT_DIR).
"""
import argparse
import json
import os
import sys
from collections import defaultdict


def load_metrics(path):
    """``{key: [(iteration, value), ...]}`` from a detectron2 metrics.json (one JSON object per line).

    A truncated last line (run killed while writing) is skipped; other bad lines raise ``ValueError``.
    """
    series = defaultdict(list)
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e})") from e
        it = rec.get("iteration")
        if it is None:
            continue
        for k, v in rec.items():
            if k != "iteration" and isinstance(v, (int, float)):
                series[k].append((it, float(v)))
    return series


def _plot(series, keys, title, ylabel, path, logy=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        xs, ys = zip(*sorted(series[k]))
        ax.plot(xs, ys, label=k, marker="o" if len(xs) < 20 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_metrics(output_dir, out=None):
    """Write the PNGs; returns the list of written paths."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.json in {output_dir!r} (expected the train.output_dir of a run)")
    series = load_metrics(path)
    if not series:
        raise ValueError(f"{path} holds no metrics")
    out = out or output_dir
    os.makedirs(out, exist_ok=True)
    written = []
    losses = sorted(k for k in series if k.startswith("loss") or k == "total_loss")
    if losses:
        written.append(_plot(series, losses, "losses", "loss", os.path.join(out, "losses.png")))
    if "lr" in series:
        written.append(_plot(series, ["lr"], "learning rate", "lr", os.path.join(out, "lr.png"), logy=True))
    miou = sorted(k for k in series if k.endswith("/mIoU"))
    if miou:
        written.append(_plot(series, miou, "mIoU per domain", "mIoU (%)", os.path.join(out, "miou.png")))
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_dir", help="train.output_dir of a run (holds metrics.json)")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: OUTPUT_DIR)")
    args = p.parse_args(argv)
    try:
        written = plot_metrics(args.output_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
