"""Training curves from a run's ``metrics.json`` (detectron2's JSONWriter: one JSON object per line).

:func:`plot_metrics` writes, into a folder:

* ``losses.png``: four panels a person reads at a glance: the total loss; the final prediction set's class /
  mask / Dice losses; the auxiliary (deep-supervision) sets, one colour per loss kind and a darker shade for
  deeper layers; the pixel-text score-map loss. Anything else named ``loss*`` joins the last panel;
* ``lr.png``: the learning rate (log scale);
* ``miou.png``: ``<domain>/mIoU`` per evaluated domain (and their average) when the run evaluated.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from typing import Dict, List, Tuple

__all__ = ["load_metrics", "plot_metrics"]

_FINAL = ("loss_ce", "loss_mask", "loss_dice")
_COLOURS = {"loss_ce": "tab:blue", "loss_mask": "tab:orange", "loss_dice": "tab:green"}
_AUX = re.compile(r"^(loss_ce|loss_mask|loss_dice)_(\d+)$")


def load_metrics(path: str) -> Dict[str, List[Tuple[int, float]]]:
    """``{key: [(iteration, value), ...]}`` from a detectron2 metrics.json.

    A truncated last line (run killed while writing) is skipped; other bad lines raise ``ValueError`` naming the
    file and line.
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _line(ax, points, **kwargs):
    xs, ys = zip(*sorted(points))
    ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, markersize=3, **kwargs)


def _finish(ax, title, ylabel=None, logy=False):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    if ylabel:
        ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _plot_losses(series, path: str) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    total, final, aux, other = axes.ravel()
    if "total_loss" in series:
        _line(total, series["total_loss"], color="black", label="total_loss")
    _finish(total, "total loss (sum of all terms)", "loss")
    for k in _FINAL:
        if k in series:
            _line(final, series[k], color=_COLOURS[k], label=k)
    _finish(final, "final prediction set", "weighted loss")
    aux_keys = sorted((k for k in series if _AUX.match(k)), key=lambda k: (_AUX.match(k)[1], int(_AUX.match(k)[2])))
    depth = max((int(_AUX.match(k)[2]) for k in aux_keys), default=0) + 1
    for k in aux_keys:
        kind, layer = _AUX.match(k)[1], int(_AUX.match(k)[2])
        # one colour per loss kind; deeper auxiliary layers are more opaque, so the family reads as a gradient
        _line(aux, series[k], color=_COLOURS[kind], alpha=0.25 + 0.75 * (layer + 1) / depth, linewidth=1,
              label=k if layer in (0, depth - 1) else None)
    _finish(aux, f"auxiliary sets 0..{depth - 1} (lighter = earlier layer)", "weighted loss")
    rest = sorted(k for k in series if (k.startswith("loss") and k not in _FINAL and not _AUX.match(k)))
    for k in rest:
        _line(other, series[k], label=k, linestyle="--" if k != "loss_score_map" else "-")
    _finish(other, "pixel-text score map" if rest == ["loss_score_map"] else "other losses", "weighted loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_simple(series, keys, title, ylabel, path, logy=False) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        _line(ax, series[k], label=k, linewidth=2.5 if k.startswith("average") else 1.5)
    _finish(ax, title, ylabel, logy)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_metrics(output_dir: str, out: str | None = None) -> List[str]:
    """Write the PNGs of the run in ``output_dir`` into ``out`` (default: ``output_dir``); returns their paths.

    Raises:
        FileNotFoundError: no metrics.json in ``output_dir``; ValueError: a corrupt or empty metrics.json.
    """
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.json in {output_dir!r} (expected the train.output_dir of a run)")
    series = load_metrics(path)
    if not series:
        raise ValueError(f"{path} holds no metrics")
    out = out or output_dir
    os.makedirs(out, exist_ok=True)
    written = []
    if any(k.startswith("loss") or k == "total_loss" for k in series):
        written.append(_plot_losses(series, os.path.join(out, "losses.png")))
    if "lr" in series:
        written.append(_plot_simple(series, ["lr"], "learning rate", "lr", os.path.join(out, "lr.png"), logy=True))
    miou = sorted(k for k in series if k.endswith("/mIoU"))
    if miou:
        written.append(_plot_simple(series, miou, "mIoU per domain", "mIoU (%)", os.path.join(out, "miou.png")))
    return written
