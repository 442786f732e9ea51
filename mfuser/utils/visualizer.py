"""Colour overlays of semantic predictions: detectron2's ``Visualizer.draw_sem_seg`` plus a legend."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_overlay"]

_LEGEND_ROW = 16  # pixels per legend entry


def draw_overlay(image: np.ndarray, labels: np.ndarray, metadata, alpha: float = 0.6) -> np.ndarray:
    """Blend the class colours of ``labels`` over ``image`` and append a legend of the classes present.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer trainIds; values >= the number of classes (e.g. 255) are left uncoloured.
        metadata: detectron2 ``Metadata`` with ``stuff_classes`` and ``stuff_colors`` (RGB).
        alpha: opacity of the colours.

    Returns:
        (H + legend rows, W, 3) uint8 RGB; the legend lists each present class with its colour.
    """
    from detectron2.utils.visualizer import Visualizer

    out = Visualizer(image, metadata).draw_sem_seg(labels, alpha=alpha).get_image()
    present = [int(c) for c in np.unique(labels) if c < len(metadata.stuff_classes)]
    if not present:
        return out
    canvas = Image.fromarray(np.full((_LEGEND_ROW * len(present) + 4, out.shape[1], 3), 255, np.uint8))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(present):
        y = 2 + i * _LEGEND_ROW
        draw.rectangle([4, y, 4 + 12, y + 12], fill=tuple(int(v) for v in metadata.stuff_colors[c]))
        draw.text((22, y), metadata.stuff_classes[c], fill=(0, 0, 0))
    return np.concatenate([out, np.asarray(canvas)], axis=0)
