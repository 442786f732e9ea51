"""Drawing primitives: the canvas (image, label and depth drawn together), the pinhole camera, noise and colours.

Every primitive of :class:`Canvas` writes the same pixels of the image, the label and the depth map, so a
scene drawn far to near (painter's algorithm) has a label that is exactly its visible surface. The
:class:`Camera` projects world points (metres, camera at the origin looking along +Z) with
``x = vx + f X / Z``, ``y = y_h + f (h_cam - Y) / Z``. Also here: the trainIds the scene draws, by name.
"""

import math

import cv2
import numpy as np

from ..classes import CITYSCAPES_CLASSES, IGNORE_LABEL

__all__ = ["Canvas", "Camera", "value_noise", "pick_colour", "noise_tile", "tile_lookup"]

#: trainIds of the classes the scene draws (:mod:`mfuser.data.classes`), by name.
_C = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = (_C[n] for n in ("road", "sidewalk", "building", "wall", "fence", "pole"))
LIGHT, SIGN, VEG, TERRAIN, SKY = (_C[n] for n in ("traffic light", "traffic sign", "vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS = (_C[n] for n in ("person", "rider", "car", "truck", "bus"))
TRAIN, MOTO, BIKE = _C["train"], _C["motorcycle"], _C["bicycle"]


# --------------------------------------------------------------------------------------------------
# Canvas and projection
# --------------------------------------------------------------------------------------------------
class Canvas:
    """Image (H, W, 3) float32 RGB in [0, 1], label (H, W) uint8 trainIds, depth (H, W) float32 metres.

    Every primitive writes the same pixels of all three (cv2 rasterisation, no anti-aliasing), so the
    label is exactly the visible surface.
    """

    def __init__(self, height: int, width: int):
        self.h, self.w = height, width
        self.img = np.zeros((height, width, 3), np.float32)
        self.lab = np.full((height, width), IGNORE_LABEL, np.uint8)
        self.depth = np.full((height, width), 1e4, np.float32)

    def poly(self, pts: np.ndarray, colour, label: int | None, depth: float) -> None:
        p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
        if np.abs(p).max() > 2**26:  # far outside the image (point close to the camera plane)
            return
        cv2.fillPoly(self.img, [p], tuple(float(c) for c in colour), cv2.LINE_8, 4)
        if label is not None:
            cv2.fillPoly(self.lab, [p], int(label), cv2.LINE_8, 4)
            cv2.fillPoly(self.depth, [p], float(depth), cv2.LINE_8, 4)

    def ellipse(self, centre, axes, colour, label: int | None, depth: float, thickness: int = -1) -> None:
        c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
        a = (max(int(round(axes[0] * 16)), 8), max(int(round(axes[1] * 16)), 8))
        if max(abs(c[0]), abs(c[1]), a[0], a[1]) > 2**26:
            return
        args = (c, a, 0, 0, 360)
        cv2.ellipse(self.img, *args, tuple(float(v) for v in colour), thickness, cv2.LINE_8, 4)
        if label is not None:
            cv2.ellipse(self.lab, *args, int(label), thickness, cv2.LINE_8, 4)
            cv2.ellipse(self.depth, *args, float(depth), thickness, cv2.LINE_8, 4)

    def line(self, p0, p1, colour, label: int | None, depth: float, thickness: float) -> None:
        t = max(1, int(round(thickness)))
        a = (int(round(p0[0] * 16)), int(round(p0[1] * 16)))
        b = (int(round(p1[0] * 16)), int(round(p1[1] * 16)))
        if max(map(abs, a + b)) > 2**26:
            return
        cv2.line(self.img, a, b, tuple(float(c) for c in colour), t, cv2.LINE_8, 4)
        if label is not None:
            cv2.line(self.lab, a, b, int(label), t, cv2.LINE_8, 4)
            cv2.line(self.depth, a, b, float(depth), t, cv2.LINE_8, 4)


class Camera:
    """Pinhole camera at height ``h`` (m) looking along +Z; ``f`` focal (px), horizon row ``yh``, centre ``vx``."""

    def __init__(self, f: float, h: float, yh: float, vx: float):
        self.f, self.h, self.yh, self.vx = f, h, yh, vx

    def project(self, X, Y, Z) -> np.ndarray:
        X, Y, Z = np.broadcast_arrays(np.asarray(X, np.float64), np.asarray(Y, np.float64), np.asarray(Z, np.float64))
        Z = np.maximum(Z, 0.2)
        return np.stack([self.vx + self.f * X / Z, self.yh + self.f * (self.h - Y) / Z], -1)

    def px(self, metres: float, Z: float) -> float:
        return self.f * metres / max(Z, 0.2)


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape (h, w) with features about ``cell`` pixels large."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def pick_colour(rng: np.random.Generator, colours: np.ndarray, jitter: float = 0.06) -> np.ndarray:
    """One of ``colours`` (N, 3), brightness and per-channel jittered by about ``jitter``, clipped to [0, 1]."""
    c = colours[rng.integers(len(colours))]
    return np.clip(c * rng.uniform(1 - jitter, 1 + jitter) + rng.normal(0, jitter / 3, 3), 0, 1).astype(np.float32)


def noise_tile(rng, n: int = 128, cell: float = 8) -> np.ndarray:
    """A (n, n) noise tile, n a power of two (looked up with wrap-around)."""
    return value_noise(rng, n, n, cell)


def tile_lookup(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``tile`` at integer parts of the (u, v) coordinates, wrapping around (a seamless texture lookup)."""
    n = tile.shape[0]
    return tile[np.floor(v).astype(np.int32) & (n - 1), np.floor(u).astype(np.int32) & (n - 1)]
