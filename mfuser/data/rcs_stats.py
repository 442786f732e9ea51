"""The rare-class-sampling statistics file: its name, format, reader and writer (the one place that knows them).

Preparation scripts and the synthetic-data generator write ``<dataset root>/rcs_class_stats.json``; the
rare-class sampler reads it (and computes the counts itself when it is missing). Format::

    {"format": "mfuser-rcs-class-stats-v1", "num_classes": K, "split": str,
     "labels": {"<label path relative to the JSON's folder>": [pixels of class 0..K-1], ...}}

This module itself imports neither torch nor detectron2.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List

from mfuser.utils.io import atomic_write_json

__all__ = ["RCS_STATS_FILENAME", "RCS_STATS_FORMAT", "load_class_stats", "save_class_stats"]

RCS_STATS_FILENAME = "rcs_class_stats.json"
RCS_STATS_FORMAT = "mfuser-rcs-class-stats-v1"


def save_class_stats(path: str, stats: Dict[str, List[int]], *, num_classes: int, split: str = "") -> None:
    """Write ``{label path: per-class pixel counts}`` to ``path`` atomically (paths stored relative to its folder).

    Args:
        path: the statistics file, normally ``<dataset root>/RCS_STATS_FILENAME``.
        stats: label path (absolute, or relative to the working directory) -> K pixel counts.
        num_classes: K.
        split: free-form name of the split the labels belong to ("" when the root holds one split).
    """
    base = os.path.dirname(os.path.abspath(path))
    labels = {os.path.relpath(os.path.abspath(k), base): [int(v) for v in c] for k, c in sorted(stats.items())}
    payload = {"format": RCS_STATS_FORMAT, "num_classes": int(num_classes), "split": split, "labels": labels}
    atomic_write_json(path, payload)


def load_class_stats(path: str) -> Dict[str, List[int]]:
    """Read a statistics file; returns ``{absolute normalised label path: counts}``.

    Raises:
        ValueError: naming the file, when it is not valid JSON or not in :data:`RCS_STATS_FORMAT`.
    """
    try:
        with open(path) as f:
            payload = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Rare-class statistics file {path} is not valid JSON ({e}); delete it and rerun") from e
    if not isinstance(payload, dict) or payload.get("format") != RCS_STATS_FORMAT:
        raise ValueError(f"{path} is not an mfuser rare-class statistics file (expected format {RCS_STATS_FORMAT!r})")
    base = os.path.dirname(os.path.abspath(path))
    return {os.path.normpath(os.path.join(base, k)): v for k, v in payload["labels"].items()}
