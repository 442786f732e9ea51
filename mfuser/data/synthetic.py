"""Procedurally generated street scenes with per-pixel labels, in one source and three target domains.

A small, download-free stand-in for the synthetic-to-real benchmark (GTA5 -> Cityscapes / BDD100K /
Mapillary). Every image is a perspective street scene rendered from a random 3D layout; the label is
drawn with the same primitives in the same order (painter's algorithm, far to near), so occlusion is
consistent between image and label. All 19 Cityscapes classes (trainIds of :mod:`mfuser.data.classes`)
occur; ``255`` (ignore) marks only the ego-vehicle bonnet and the border left by camera roll.

Scene (shared by all domains; metres, camera at the origin looking along +Z):

* ground plane: road (asphalt with lane markings, crossings, rails; all labelled road), kerbs and tiled
  sidewalks, terrain strips (grass / dirt); sky with gradient and clouds above the horizon;
* both street sides: facades at a lateral offset, split along Z into buildings (windows in perspective,
  shop fronts), vegetation (hedges / park trees), low walls and gaps; fences along the sidewalk; a far
  skyline and sometimes a building closing the street;
* objects sorted by depth and drawn far to near: cars (3D boxes with cabin, windows, wheels, lights,
  rear or front view plus the visible side), trucks (cab + cargo box), buses (window band), trams
  (``train``, on rails), persons, riders on bicycles / motorcycles (side view), parked two-wheelers,
  street lamps and poles, traffic lights (box with three lamps), traffic signs (discs, triangles,
  squares), trees.
  Sizes follow from the projection ``x = vx + f X / Z``, ``y = y_h + f (h_cam - Y) / Z``, so objects
  shrink toward the horizon.

Each image features one "rare" class in rotation (train, bus, truck, motorcycle, bicycle, rider, traffic
light, wall, fence, terrain), so any 10 consecutive images contain every class.

Domains (how each target shifts appearance from the source; the cues stay: sky on top, road at the
bottom with markings, cars as boxes with wheels and windows, poles thin and vertical, ...):

``source`` (GTA5-like, written like prepared GTA5)
    Clean, game-like shading: saturated palette (bright car paints, pastel facades, blue sky), flat
    shading with sun-lit and shadowed facade sides, hard car shadows, weak surface texture, no sensor
    noise, sharp; mostly sunny, 1 in 6 overcast and 1 in 6 at dusk (as GTA5 has weather and time of day).
    Car-mounted camera: height 1.3-1.8 m, horizon at 42-50 % of the height, focal
    0.55-0.7 W. ``source/images/00001.png`` + ``source/labels/00001_labelTrainIds.png`` and the
    rare-class-sampling statistics ``rcs_class_stats.json`` (the format of :mod:`mfuser.data.samplers`).
``target_cityscapes`` (written like Cityscapes val)
    Overcast northern-European look: desaturated greys and beiges, white-grey sky, darker greens,
    more black/grey/white cars; stronger surface texture, mild sensor noise, slight blur, gamma
    change, vignetting. Narrower field of view (focal 0.75-0.9 W), lower camera (1.2-1.4 m), and the
    ego-vehicle bonnet at the bottom (label 255, as in Cityscapes). ``leftImg8bit/val/<city>/
    <city>_<seq>_<frame>_leftImg8bit.png`` + ``gtFine/val/<city>/..._gtFine_labelTrainIds.png``.
``target_bdd`` (written like BDD100K 10k val)
    Dash-cam look: wide field of view (focal 0.45-0.55 W), horizon lower in the frame, day / dusk /
    night illumination with warm or blue colour casts, headlight glow, strong sensor noise,
    horizontal motion blur, windscreen glare and vignetting, JPEG compression (quality 60-80).
    ``images/10k/val/<name>.jpg`` + ``labels/sem_seg/masks/val/<name>.png`` (trainIds).
``target_mapillary`` (written like Mapillary Vistas val, both label layouts)
    Crowd-sourced variety: camera height 1.0-2.8 m, horizon 32-55 %, focal 0.45-0.9 W, roll of up to
    +-6 degrees, per-image hue / saturation / contrast changes, depth-dependent fog or haze, blur,
    strong texture, JPEG (quality 75-90). ``validation/images/<name>.jpg`` +
    ``validation/labels/<name>_labelTrainIds.png`` (the MFuser configs) and
    ``cityscapes_trainIdLabel/val/label/<name>.png`` (the Rein/TLDR layout).

Public API: :func:`render_scene`, :func:`generate_domain`, :func:`generate_all`,
:func:`class_histogram`, :func:`majority_class_baseline`. Output is deterministic per seed: one image
depends only on ``(seed, domain, index, size)``, never on ``workers``; same seed -> byte-identical files.
"""

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .classes import CITYSCAPES_CLASSES, IGNORE_LABEL, NUM_CLASSES

__all__ = [
    "DOMAINS",
    "TARGET_DOMAINS",
    "GENERATOR_VERSION",
    "render_scene",
    "generate_domain",
    "generate_all",
    "domain_files",
    "class_histogram",
    "majority_class_baseline",
    "RCS_STATS_FILENAME",
]

#: Bumped whenever rendering changes, so a root generated by an older version is not taken as complete.
GENERATOR_VERSION = 1

#: Source domain first, then the targets; the keys are also the sub-folder names under the root.
DOMAINS: Tuple[str, ...] = ("source", "target_cityscapes", "target_bdd", "target_mapillary")
TARGET_DOMAINS: Tuple[str, ...] = DOMAINS[1:]

_MARKER = ".synthetic_complete.json"  # written last in a domain root / in the generation root
_MANIFEST = ".synthetic_generation.json"  # written first in the generation root (resume key)
_CITIES = ("synthbach", "synthburg", "synthdorf")

_C = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = (_C[n] for n in ("road", "sidewalk", "building", "wall", "fence", "pole"))
LIGHT, SIGN, VEG, TERRAIN, SKY = (_C[n] for n in ("traffic light", "traffic sign", "vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS = (_C[n] for n in ("person", "rider", "car", "truck", "bus"))
TRAIN, MOTO, BIKE = _C["train"], _C["motorcycle"], _C["bicycle"]

#: Classes that each image features in turn (so every class appears in any 10 consecutive images).
_FEATURED = (TRAIN, BUS, TRUCK, MOTO, BIKE, RIDER, LIGHT, WALL, FENCE, TERRAIN)


# --------------------------------------------------------------------------------------------------
# Domain styles
# --------------------------------------------------------------------------------------------------
def _rgb(*hexes: str) -> np.ndarray:
    return np.array([[int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] for h in hexes], np.float32)


_SOURCE_PALETTE = {
    "sky_top": _rgb("3a78e0", "4f8ff0", "2e6ad0"),
    "sky_horizon": _rgb("b8d8ff", "cfe6ff", "a8cff5"),
    "road": _rgb("4a4a50", "55555a", "3e3f45"),
    "marking": _rgb("f2f2f2", "f0d040"),
    "sidewalk": _rgb("b8aa98", "a8a4a0", "c4b49c"),
    "building": _rgb("d9b98c", "b5654a", "e8e2d0", "9aaed0", "c89a80", "e0c8a0", "a0b890"),
    "window": _rgb("2a3a5a", "3a5a80", "1e2838"),
    "wall": _rgb("9a9890", "8a7868", "b0a8a0"),
    "fence": _rgb("5a6068", "8c6a40", "3c5a40"),
    "pole": _rgb("5a5c60", "404246", "6a6a64"),
    "light_box": _rgb("202020", "303a30", "c8a818"),
    "sign": _rgb("d02020", "2050c0", "f0d020", "f4f4f4"),
    "veg": _rgb("3a7a28", "4c8a30", "2c6a2a", "5a9a38"),
    "terrain": _rgb("8aa040", "9a8a50", "a0b050"),
    "car": _rgb("d02020", "2040c0", "20a040", "f0c020", "f0f0f0", "202020", "a8a8b0", "e07020", "8020a0"),
    "truck": _rgb("f0f0f0", "3060c0", "c03020", "e0a020", "408040"),
    "bus": _rgb("f0c000", "d02828", "2a6ad0", "f4f4f4"),
    "train": _rgb("e8e8e8", "c02020", "20a070"),
    "clothes": _rgb("d02020", "2040c0", "20a040", "f0c020", "202020", "f0f0f0", "8a5030", "a020a0"),
    "skin": _rgb("f0c8a0", "c89068", "8a5a38"),
    "twowheel": _rgb("c02020", "202020", "2050c0", "e0e0e0", "30a030"),
}

_CITY_PALETTE = dict(
    _SOURCE_PALETTE,
    sky_top=_rgb("b8c0c8", "c8ccd0", "a8b4c0"),
    sky_horizon=_rgb("e4e8ec", "dcdfe2", "eef0f2"),
    road=_rgb("5c5c5e", "666664", "525456"),
    sidewalk=_rgb("8c8884", "9a948c", "7c7a78"),
    building=_rgb("8a8478", "a09888", "6e6c6a", "b0a898", "7a6a5c", "94908a"),
    window=_rgb("30343a", "40464e", "24282c"),
    veg=_rgb("3e5a2a", "4a6430", "34502a"),
    terrain=_rgb("7a8448", "80785a"),
    car=_rgb("1c1c1e", "303234", "d8d8d8", "8a8c90", "5a6070", "7a2020", "2a3a5a"),
    truck=_rgb("d8d8d8", "5a6a7a", "8a2a20"),
    bus=_rgb("e0d8c0", "c0c4c8", "b8d0e0"),
    train=_rgb("d0d0c8", "b03030"),
    clothes=_rgb("202022", "3a3a40", "5a4a3a", "6a7a8a", "8a2a2a", "d0d0d0"),
)

_BDD_PALETTE = dict(
    _SOURCE_PALETTE,
    sky_top=_rgb("6a8ab8", "8aa0c0", "5a7aa8"),
    sky_horizon=_rgb("d8dce0", "e8d8c0", "c8d0d8"),
    road=_rgb("6a6662", "5a5856", "747068"),
    sidewalk=_rgb("a09a90", "8a8680"),
    building=_rgb("a89880", "887060", "c0b8a8", "706860", "9098a0"),
    veg=_rgb("4a6a30", "5a7038", "3a5a2a"),
    car=_rgb("e8e8e8", "1c1c1c", "9a9ca0", "6a7080", "8a1a1a", "2a4a8a"),
    truck=_rgb("e8e8e8", "a0a0a0", "2a5a9a"),
    bus=_rgb("e8e8e8", "3a6ab0", "d0a020"),
    clothes=_rgb("1a1a1a", "2a3a5a", "6a6a6a", "a03030", "e0e0e0"),
)

_MAPILLARY_PALETTE = dict(
    _SOURCE_PALETTE,
    sky_top=_rgb("5a88c8", "9ab0c8", "7a98c0"),
    road=_rgb("62605c", "4e4e52", "706a66"),
    building=_rgb("c0a080", "a07060", "d0d0c8", "8a98a8", "b09070", "806050"),
    veg=_rgb("3a6a2a", "5a7a30", "2a5a30", "6a7a28"),
    car=_rgb("c8c8c8", "1c1c1c", "8a1c1c", "1c3a7a", "a0a0a0", "5a5a3a"),
)

#: Per-domain rendering style. Camera: h (m), horizon (fraction of H), focal (fraction of W).
_STYLES: Dict[str, dict] = {
    "source": dict(
        palette=_SOURCE_PALETTE,
        cam_h=(1.3, 1.8),
        horizon=(0.42, 0.50),
        focal=(0.55, 0.70),
        roll=0.0,
        texture=0.5,
        sun=(0.55, 1.0),
        shadows=True,
        sat=(1.05, 1.2),
        gamma=(1.0, 1.0),
        cast=0.0,
        noise=(0.0, 0.0),
        blur=(0.0, 0.4),
        motion=(0, 0),
        fog=(0.0, 0.0),
        vignette=0.0,
        hood=None,
        illumination=("day", "day", "day", "day", "overcast", "dusk"),  # GTA5 also has weather and dusk
        jpeg=None,
        hue=0.0,
        contrast=(1.0, 1.1),
        glare=False,
    ),
    "target_cityscapes": dict(
        palette=_CITY_PALETTE,
        cam_h=(1.2, 1.4),
        horizon=(0.40, 0.46),
        focal=(0.75, 0.90),
        roll=0.0,
        texture=1.5,
        sun=(0.85, 0.95),
        shadows=False,
        sat=(0.6, 0.8),
        gamma=(1.1, 1.3),
        cast=0.04,
        noise=(0.015, 0.03),
        blur=(0.6, 1.0),
        motion=(0, 0),
        fog=(0.0, 0.004),
        vignette=0.25,
        hood=(0.10, 0.16),
        illumination=("day",),
        jpeg=None,
        hue=0.0,
        contrast=(0.85, 1.0),
        glare=False,
    ),
    "target_bdd": dict(
        palette=_BDD_PALETTE,
        cam_h=(1.2, 1.6),
        horizon=(0.46, 0.58),
        focal=(0.45, 0.55),
        roll=1.0,
        texture=1.3,
        sun=(0.7, 1.0),
        shadows=False,
        sat=(0.8, 1.1),
        gamma=(0.9, 1.2),
        cast=0.12,
        noise=(0.03, 0.06),
        blur=(0.3, 0.8),
        motion=(3, 9),
        fog=(0.0, 0.006),
        vignette=0.4,
        hood=(0.0, 0.08),
        illumination=("day", "day", "day", "dusk", "night"),
        jpeg=(60, 80),
        hue=0.0,
        contrast=(0.9, 1.2),
        glare=True,
    ),
    "target_mapillary": dict(
        palette=_MAPILLARY_PALETTE,
        cam_h=(1.0, 2.8),
        horizon=(0.32, 0.55),
        focal=(0.45, 0.90),
        roll=6.0,
        texture=1.8,
        sun=(0.6, 1.0),
        shadows=False,
        sat=(0.7, 1.3),
        gamma=(0.85, 1.2),
        cast=0.08,
        noise=(0.01, 0.035),
        blur=(0.3, 1.4),
        motion=(0, 0),
        fog=(0.0, 0.03),
        vignette=0.15,
        hood=None,
        illumination=("day", "day", "day", "overcast"),
        jpeg=(75, 90),
        hue=12.0,
        contrast=(0.8, 1.25),
        glare=False,
    ),
}

#: Per-class texture amplitude (fine, coarse) of the detail pass; scaled by the domain's ``texture``.
_TEX = np.zeros((256, 2), np.float32)
for _cls, _amp in {
    ROAD: (0.10, 0.08),
    SIDEWALK: (0.08, 0.06),
    BUILDING: (0.05, 0.08),
    WALL: (0.10, 0.08),
    FENCE: (0.05, 0.04),
    POLE: (0.03, 0.02),
    LIGHT: (0.02, 0.0),
    SIGN: (0.02, 0.0),
    VEG: (0.28, 0.18),
    TERRAIN: (0.20, 0.14),
    SKY: (0.0, 0.03),
    PERSON: (0.05, 0.03),
    RIDER: (0.05, 0.03),
    CAR: (0.03, 0.02),
    TRUCK: (0.04, 0.03),
    BUS: (0.03, 0.02),
    TRAIN: (0.03, 0.02),
    MOTO: (0.04, 0.02),
    BIKE: (0.04, 0.02),
}.items():
    _TEX[_cls] = _amp


# --------------------------------------------------------------------------------------------------
# Canvas and projection
# --------------------------------------------------------------------------------------------------
class _Canvas:
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


class _Camera:
    """Pinhole camera at height ``h`` (m) looking along +Z; ``f`` focal (px), horizon row ``yh``, centre ``vx``."""

    def __init__(self, f: float, h: float, yh: float, vx: float):
        self.f, self.h, self.yh, self.vx = f, h, yh, vx

    def project(self, X, Y, Z) -> np.ndarray:
        X, Y, Z = np.broadcast_arrays(np.asarray(X, np.float64), np.asarray(Y, np.float64), np.asarray(Z, np.float64))
        Z = np.maximum(Z, 0.2)
        return np.stack([self.vx + self.f * X / Z, self.yh + self.f * (self.h - Y) / Z], -1)

    def px(self, metres: float, Z: float) -> float:
        return self.f * metres / max(Z, 0.2)


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape (h, w) with features about ``cell`` pixels large."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _pick(rng: np.random.Generator, colours: np.ndarray, jitter: float = 0.06) -> np.ndarray:
    c = colours[rng.integers(len(colours))]
    return np.clip(c * rng.uniform(1 - jitter, 1 + jitter) + rng.normal(0, jitter / 3, 3), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Scene layout
# --------------------------------------------------------------------------------------------------
def _side_segments(rng, z0: float, z1: float, featured: int, side_kind: str) -> List[dict]:
    """Facade segments along Z on one street side: building / vegetation / wall / gap."""
    segs, z = [], z0
    while z < z1:
        if side_kind == "park":
            kind = rng.choice(["veg", "veg", "gap", "wall"] if featured == WALL else ["veg", "veg", "gap"])
        else:
            kind = rng.choice(["building"] * 6 + ["veg", "gap"] + (["wall", "wall"] if featured == WALL else ["wall"]))
        length = {
            "building": rng.uniform(8, 25),
            "veg": rng.uniform(6, 20),
            "wall": rng.uniform(5, 15),
            "gap": rng.uniform(3, 10),
        }[kind]
        height = {"building": rng.uniform(7, 22), "veg": rng.uniform(3, 9), "wall": rng.uniform(1.5, 3.5), "gap": 0.0}[
            kind
        ]
        segs.append(dict(kind=str(kind), z0=z, z1=z + length, height=height, seed=int(rng.integers(1 << 30))))
        z += length
    return segs


def _layout(rng: np.random.Generator, featured: int) -> dict:
    """Random street layout in world coordinates (metres)."""
    # the camera drives in lane 0 (centred on X = 0); lanes k < 0 carry oncoming traffic
    lanes_left, lanes_right = int(rng.integers(0, 3)), int(rng.integers(0, 2))
    lane_w = rng.uniform(3.0, 3.6)
    road_l, road_r = -(0.5 + lanes_left) * lane_w - 0.3, (0.5 + lanes_right) * lane_w + 0.3
    lay = dict(lane_w=lane_w, road=(road_l, road_r), lanes_left=lanes_left, lanes_right=lanes_right)
    z_end = rng.uniform(60, 160) if rng.random() < 0.5 else 400.0
    lay["z_end"] = z_end
    for side, edge in (("left", road_l), ("right", road_r)):
        sw = rng.uniform(1.8, 4.0)
        terrain = rng.uniform(1.5, 5.0) if (rng.random() < 0.45 or featured == TERRAIN) else 0.0
        kind = "park" if rng.random() < 0.2 else "urban"
        sgn = -1 if side == "left" else 1
        lay[side] = dict(
            sidewalk=(edge, edge + sgn * sw),
            terrain=terrain,
            facade=edge + sgn * (sw + terrain + rng.uniform(0.0, 1.0)),
            segments=_side_segments(rng, 0.0, z_end, featured, kind),
        )
        # boundary along the outer sidewalk edge: none, a fence or a wall
        u = rng.random()
        if featured == FENCE:
            lay[side]["boundary"] = "fence" if u < 0.9 else None
        elif featured == WALL:
            lay[side]["boundary"] = "wall" if u < 0.8 else None
        else:
            lay[side]["boundary"] = "fence" if u < 0.25 else ("wall" if u < 0.45 else None)
    lay["crossing"] = rng.uniform(8, 30) if rng.random() < 0.3 else None
    lay["rails"] = featured == TRAIN or rng.random() < 0.08
    return lay


# --------------------------------------------------------------------------------------------------
# Static layers: sky, ground, facades
# --------------------------------------------------------------------------------------------------
def _draw_sky(cv: _Canvas, cam: _Camera, pal, rng, light: dict) -> None:
    H, W = cv.h, cv.w
    rows = int(min(H, max(1, math.ceil(cam.yh) + 2)))  # the ground covers everything below the horizon
    ys = np.arange(rows, dtype=np.float32)[:, None, None]
    t = np.clip(ys / max(cam.yh, 1.0), 0, 1) ** 1.3
    sky = light["sky_top"] * (1 - t) + light["sky_horizon"] * t  # (rows, 1, 3)
    sky = np.broadcast_to(sky, (rows, W, 3))
    if light["clouds"] > 0:
        n = 0.6 * _noise(rng, rows, W, 48) + 0.4 * _noise(rng, rows, W, 12)
        cloud = (np.clip((n - (0.55 - light["clouds"])) * 3, 0, 1)[..., None] * (1 - t * 0.7)).astype(np.float32)
        sky = sky * (1 - cloud) + light["cloud_colour"] * cloud
    cv.img[:rows] = sky
    cv.lab[:] = SKY
    cv.depth[:] = 1e4


def _ground_coords(cv: _Canvas, cam: _Camera, r0: int):
    """Ground-plane X, Z (metres) of rows r0..H-1 (all below the horizon)."""
    dy = np.arange(r0, cv.h, dtype=np.float32)[:, None] + 0.5 - cam.yh
    Z = (cam.f * cam.h / np.maximum(dy, 0.35)).astype(np.float32)
    X = ((np.arange(cv.w, dtype=np.float32)[None, :] + 0.5 - cam.vx) * Z / cam.f).astype(np.float32)
    return X, np.broadcast_to(Z, X.shape)


def _tile(rng, n: int = 128, cell: float = 8) -> np.ndarray:
    """A (n, n) noise tile, n a power of two (looked up with wrap-around)."""
    return _noise(rng, n, n, cell)


def _lookup(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    n = tile.shape[0]
    return tile[np.floor(v).astype(np.int32) & (n - 1), np.floor(u).astype(np.int32) & (n - 1)]


def _draw_ground(cv: _Canvas, cam: _Camera, lay: dict, pal, rng, style) -> None:
    """Road (with markings), kerbs, sidewalks, terrain strips and far ground, rows below the horizon."""
    r0 = int(math.floor(cam.yh + 0.35 - 0.5)) + 1
    r0 = min(max(r0, 0), cv.h)
    if r0 >= cv.h:
        return
    X, Z = _ground_coords(cv, cam, r0)
    road_l, road_r = lay["road"]
    texture = style["texture"]
    patch = _lookup(_tile(rng, 128, 10), X * 2.0, Z * 1.0)
    near = Z < 30
    tiles = ((np.mod(X, 0.6) < 0.05) | (np.mod(Z, 0.6) < 0.05)) & near

    # label of every ground pixel by lateral position; "surface" selects a colour/shading recipe
    L, R = lay["left"], lay["right"]
    l_sw, r_sw = L["sidewalk"][1], R["sidewalk"][1]
    l_ter, r_ter = l_sw - L["terrain"], r_sw + R["terrain"]
    far_l = TERRAIN if rng.random() < 0.6 else SIDEWALK
    far_r = TERRAIN if rng.random() < 0.6 else SIDEWALK
    conds = [
        (X >= road_l) & (X <= road_r),
        (X < road_l) & (X >= l_sw),
        (X > road_r) & (X <= r_sw),
        (X < l_sw) & (X >= l_ter),
        (X > r_sw) & (X <= r_ter),
        X < 0,
    ]
    # surfaces: 0 road, 1 left sidewalk, 2 right sidewalk, 3 left terrain, 4 right terrain, 5 far left, 6 far right
    surf = np.select(conds, [0, 1, 2, 3, 4, 5], 6).astype(np.uint8)
    surf_label = np.array([ROAD, SIDEWALK, SIDEWALK, TERRAIN, TERRAIN, far_l, far_r], np.uint8)
    colours = np.stack(
        [
            _pick(rng, pal["road"]),
            _pick(rng, pal["sidewalk"]),
            _pick(rng, pal["sidewalk"]),
            _pick(rng, pal["terrain"]),
            _pick(rng, pal["terrain"]),
            _pick(rng, pal["terrain"] if far_l == TERRAIN else pal["sidewalk"]),
            _pick(rng, pal["terrain"] if far_r == TERRAIN else pal["sidewalk"]),
        ]
    )
    amp = np.array([0.12, 0.08, 0.08, 0.2, 0.2, 0.15, 0.15], np.float32) * texture
    shade = 1 + amp[surf] * patch
    is_sw = (surf == 1) | (surf == 2)
    shade -= 0.18 * (tiles & is_sw)
    kerb = ((np.abs(X - road_l) < 0.2) & (surf == 1)) | ((np.abs(X - road_r) < 0.2) & (surf == 2))
    shade[kerb] = 1.15
    img = colours[surf] * shade[..., None]

    # lane markings and crossings (labelled road, as in Cityscapes); rails darker/brighter lines
    road = surf == 0
    lw = 0.12
    mark = (np.abs(X - (road_l + 0.35)) < lw) | (np.abs(X - (road_r - 0.35)) < lw)
    dashes = np.mod(Z, 9.0) < 4.0
    for k in range(-lay["lanes_left"], lay["lanes_right"]):  # lane boundaries; solid between the directions
        xc = (k + 0.5) * lay["lane_w"]
        mark |= (np.abs(X - xc) < lw) & (dashes if k != -1 else True)
    if lay["crossing"] is not None:
        zc = lay["crossing"]
        mark |= (Z > zc) & (Z < zc + 3.5) & (np.mod(X, 1.0) < 0.5)
    mark &= road
    img[mark] = _pick(rng, pal["marking"][:1], 0.03) * (1 + 0.05 * texture * patch[mark, None])
    if lay["rails"]:
        rails = road & ((np.abs(X + 0.72) < 0.05) | (np.abs(X - 0.72) < 0.05))
        img[rails] = colours[0] * 1.5
    cv.img[r0:] = img
    cv.lab[r0:] = surf_label[surf]
    cv.depth[r0:] = Z


def _draw_skyline(cv: _Canvas, cam: _Camera, pal, rng, light) -> None:
    """Distant buildings and trees sitting on the horizon (far behind everything else)."""
    x = 0.0
    while x < cv.w:
        wdt = rng.uniform(0.03, 0.12) * cv.w
        hgt = rng.uniform(0.02, 0.12) * cv.h
        kind = BUILDING if rng.random() < 0.6 else VEG
        c = _pick(rng, pal["building"] if kind == BUILDING else pal["veg"]) * 0.8 + 0.2 * light["sky_horizon"]
        if kind == BUILDING:
            cv.poly(
                [[x, cam.yh + 1], [x + wdt, cam.yh + 1], [x + wdt, cam.yh - hgt], [x, cam.yh - hgt]], c, BUILDING, 900
            )
        else:
            cv.ellipse((x + wdt / 2, cam.yh), (wdt / 2, hgt), c, VEG, 900)
        x += wdt * rng.uniform(0.7, 1.3)


def _facade_pixels(cv: _Canvas, cam: _Camera, xplane: float, z_max: float):
    """Per-column depth and per-pixel height on the vertical plane X = xplane (the visible columns only)."""
    xs = np.arange(cv.w, dtype=np.float32) + 0.5 - cam.vx
    with np.errstate(divide="ignore"):
        Zc = np.where(xs * xplane > 0, cam.f * xplane / xs, np.inf).astype(np.float32)
    Zc = np.where(Zc < z_max, Zc, np.inf)
    ys = np.arange(cv.h, dtype=np.float32)[:, None] + 0.5 - cam.yh
    Y = cam.h - ys * np.where(np.isfinite(Zc), Zc, 0)[None, :] / cam.f
    return Zc, Y


_KIND = {"gap": 0, "building": 1, "veg": 2, "wall": 3}
_KIND_LABEL = np.array([IGNORE_LABEL, BUILDING, VEG, WALL], np.uint8)


def _draw_facades(cv: _Canvas, cam: _Camera, lay: dict, pal, rng, light, style) -> None:
    """Both street sides: per column, the facade segment hit at depth Zc; per pixel, the height Y on it."""
    texture = style["texture"]
    tex = _tile(rng, 64, 3)
    for side in ("left", "right"):
        s = lay[side]
        shade = light["sun_left"] if side == "left" else light["sun_right"]
        Zc, Y = _facade_pixels(cv, cam, s["facade"], lay["z_end"])
        cols = np.isfinite(Zc)
        if cols.any():
            segs = s["segments"]
            srng = np.random.default_rng(segs[0]["seed"])
            kind = np.array([_KIND[g["kind"]] for g in segs], np.int64)
            height = np.array([g["height"] for g in segs], np.float32)
            z0 = np.array([g["z0"] for g in segs], np.float32)
            base = np.stack([_pick(srng, pal[{0: "building", 1: "building", 2: "veg", 3: "wall"}[k]]) for k in kind])
            win_c = np.stack([_pick(srng, pal["window"]) for _ in segs])
            fh = srng.uniform(2.8, 3.6, len(segs)).astype(np.float32)
            ws = srng.uniform(1.8, 3.5, len(segs)).astype(np.float32)
            shop = srng.random(len(segs)) < 0.6
            zc = Zc[cols]
            Yc = Y[:, cols]
            i = np.clip(np.searchsorted(z0, zc, side="right") - 1, 0, len(segs) - 1)
            k = kind[i]
            top = height[i] + np.where(k == 2, 1.5 * _lookup(tex, zc * 0.7, np.zeros_like(zc)), 0)
            m = (Yc >= 0) & (Yc <= top[None, :]) & (k != 0)[None, :]
            colr = np.broadcast_to(base[i][None] * shade, Yc.shape + (3,)).copy()
            n = _lookup(tex, zc[None, :] * 4, Yc * 4)
            veg, wall, bld = (k == 2)[None, :], (k == 3)[None, :], (k == 1)[None, :]
            joint = (np.mod(Yc, 0.3) < 0.035) | (np.mod(zc[None, :] + 0.3 * np.mod(np.floor(Yc / 0.3), 2), 0.6) < 0.035)
            gain = 1 + np.where(veg, 0.35 * n, 0) + np.where(wall, 0.1 * texture * n - 0.25 * joint, 0)
            colr *= gain[..., None]
            rel_z = (zc - z0[i])[None, :]
            wy, wz = np.mod(Yc - 0.5, fh[i]) / fh[i], np.mod(rel_z, ws[i]) / ws[i]
            win = (wy > 0.3) & (wy < 0.78) & (wz > 0.25) & (wz < 0.75) & (Yc > 3.2) & (Yc < top - 0.8)
            shp = (Yc > 0.3) & (Yc < 2.6) & (np.mod(rel_z, 6.0) > 1.0) & shop[i][None, :]
            glass = bld & (win | shp)
            colr[glass] = (np.broadcast_to(win_c[i][None], colr.shape)[glass]) * shade
            cornice = bld & (np.abs(Yc - (top - 0.3)) < 0.3)
            colr[cornice] *= 0.8
            sub_img, sub_lab, sub_dep = cv.img[:, cols], cv.lab[:, cols], cv.depth[:, cols]
            sub_img[m] = colr[m]
            sub_lab[m] = np.broadcast_to(_KIND_LABEL[k][None, :], m.shape)[m]
            sub_dep[m] = np.broadcast_to(zc[None, :], m.shape)[m]
            cv.img[:, cols], cv.lab[:, cols], cv.depth[:, cols] = sub_img, sub_lab, sub_dep
        if s["boundary"] is not None:
            _draw_boundary(cv, cam, s, lay, pal, rng, shade, texture)


def _draw_boundary(cv: _Canvas, cam: _Camera, s: dict, lay: dict, pal, rng, shade, texture) -> None:
    """A fence (mesh with posts and a top rail) or a wall (blocks with mortar joints and a coping) on the
    vertical plane along the outer sidewalk edge, over a random stretch of Z."""
    kind = s["boundary"]
    xplane = s["sidewalk"][1]
    z0 = rng.uniform(0, 15)
    z1 = z0 + rng.uniform(15, 60)
    Zc, Y = _facade_pixels(cv, cam, xplane, min(lay["z_end"], z1))
    cols = np.isfinite(Zc) & (Zc >= z0)
    if not cols.any():
        return
    zc, Yc = Zc[cols], Y[:, cols]
    if kind == "fence":
        hgt = rng.uniform(1.0, 2.0)
        c = _pick(rng, pal["fence"])
        post = np.mod(zc, 2.5) < 0.15
        mesh = (np.mod(zc[None, :] * 6 + Yc * 6, 1.0) < 0.3) | (np.mod(zc[None, :] * 6 - Yc * 6, 1.0) < 0.3)
        rail = (np.abs(Yc - hgt) < 0.06) | post[None, :]
        colr = np.where((mesh | rail)[..., None], c * shade, c * shade * 0.55 + 0.1)
        label = FENCE
    else:
        hgt = rng.uniform(1.2, 3.0)
        c = _pick(rng, pal["wall"])
        course = np.floor(Yc / 0.3)
        joint = (np.mod(Yc, 0.3) < 0.035) | (np.mod(zc[None, :] + 0.3 * np.mod(course, 2), 0.6) < 0.035)
        n = _lookup(_tile(rng, 64, 4), zc[None, :] * 3, Yc * 3)
        colr = c * shade * (1 + 0.1 * texture * n[..., None] - 0.25 * joint[..., None])
        colr = np.where((Yc > hgt - 0.15)[..., None], c * shade * 0.75, colr)
        label = WALL
    m = (Yc >= 0) & (Yc <= hgt)
    full = np.zeros((cv.h, cv.w), bool)
    full[:, cols] = m
    sub = cv.img[:, cols]
    sub[m] = colr[m]
    cv.img[:, cols] = sub
    cv.lab[full] = label
    cv.depth[full] = np.broadcast_to(zc[None, :], m.shape)[m]


def _draw_street_end(cv: _Canvas, cam: _Camera, lay: dict, pal, rng, light) -> None:
    if lay["z_end"] >= 399:
        return
    z = lay["z_end"]
    xl, xr = lay["left"]["facade"] - 20, lay["right"]["facade"] + 20
    hgt = rng.uniform(8, 25)
    c = _pick(rng, pal["building"]) * light["sun_front"]
    pts = cam.project([xl, xr, xr, xl], [0, 0, hgt, hgt], [z, z, z, z])
    cv.poly(pts, c, BUILDING, z)
    # windows as a grid of small quads
    wc = _pick(rng, pal["window"])
    for yy in np.arange(3.5, hgt - 1, 3.2):
        for xx in np.arange(xl + 1.0, xr - 1, 3.0):
            q = cam.project([xx, xx + 1.4, xx + 1.4, xx], [yy, yy, yy + 1.6, yy + 1.6], [z] * 4)
            cv.poly(q, wc, BUILDING, z)


# --------------------------------------------------------------------------------------------------
# Objects (each returns nothing; drawn far to near by the caller)
# --------------------------------------------------------------------------------------------------
def _box_faces(cv, cam, X0, X1, Y0, Y1, Z0, Z1, c_back, c_side, label, facing_cam=True):
    """A box: the visible side face (if any) then the face at Z0 (towards the camera)."""
    if X0 > 0:
        xs = X0
    elif X1 < 0:
        xs = X1
    else:
        xs = None
    if xs is not None:
        cv.poly(cam.project([xs, xs, xs, xs], [Y0, Y0, Y1, Y1], [Z0, Z1, Z1, Z0]), c_side, label, Z0 + 0.5)
    if cam.h > Y1:  # top visible from above
        cv.poly(cam.project([X0, X1, X1, X0], [Y1] * 4, [Z0, Z0, Z1, Z1]), c_back * 1.1, label, Z0 + 0.5)
    cv.poly(cam.project([X0, X1, X1, X0], [Y0, Y0, Y1, Y1], [Z0] * 4), c_back, label, Z0)
    return xs


def _wheels_side(cv, cam, xs, zs: Sequence[float], r: float, label, tyre=(0.05, 0.05, 0.06)):
    for z in zs:
        c = cam.project(xs, r, z)
        rx = abs(cam.project(xs, r, z + r)[0] - cam.project(xs, r, z - r)[0]) / 2
        cv.ellipse(c, (max(rx, 0.5), cam.px(r, z)), tyre, label, z)
        cv.ellipse(c, (max(rx * 0.45, 0.5), cam.px(r * 0.45, z)), (0.55, 0.55, 0.58), label, z)


def _shadow(cv, cam, X0, X1, Z0, Z1, light):
    """Darken the road under a vehicle (image only; the label stays road)."""
    if light["shadow"] <= 0:
        return
    pts = cam.project([X0 - 0.2, X1 + 0.4, X1 + 0.4, X0 - 0.2], [0.01] * 4, [Z0 - 0.2, Z0 - 0.2, Z1 + 0.3, Z1 + 0.3])
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cv.w), min(y1, cv.h)
    if x1 <= x0 or y1 <= y0:
        return
    p = np.round((pts - [x0, y0]) * 16).astype(np.int32).reshape(-1, 1, 2)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(m, [p], 1, cv2.LINE_8, 4)
    m = m.astype(bool) & (cv.lab[y0:y1, x0:x1] == ROAD)
    cv.img[y0:y1, x0:x1][m] *= 1 - light["shadow"]


def _draw_car(cv, cam, o, pal, rng, light):
    X, Z, facing = o["X"], o["Z"], o["facing"]
    w, L, h = rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.8), rng.uniform(1.4, 1.6)
    c = _pick(rng, pal["car"], 0.08)
    sun = light["sun_front"]
    glass = np.array([0.12, 0.15, 0.2], np.float32) + 0.25 * light["sky_top"]
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + L, light)
    hb = 0.95
    xs = _box_faces(cv, cam, X0, X1, 0.25, hb, Z, Z + L, c * sun, c * sun * 0.8, CAR)
    # cabin
    cz0, cz1 = Z + (0.9 if facing else 1.2), Z + L - (1.2 if facing else 0.9)
    ci = 0.12
    if xs is not None:
        xsc = xs + (ci if xs == X0 else -ci)
        cv.poly(cam.project([xsc] * 4, [hb, hb, h, h], [Z + 0.5, Z + L - 0.5, cz1, cz0]), c * sun * 0.75, CAR, Z + 0.6)
        cv.poly(
            cam.project(
                [xsc] * 4, [hb + 0.08, hb + 0.08, h - 0.06, h - 0.06], [Z + 0.7, Z + L - 0.7, cz1 - 0.1, cz0 + 0.1]
            ),
            glass,
            CAR,
            Z + 0.6,
        )
        _wheels_side(cv, cam, xs, (Z + 0.8, Z + L - 0.85), 0.33, CAR)
    cv.poly(
        cam.project([X0 + ci, X1 - ci, X1 - ci - 0.15, X0 + ci + 0.15], [hb, hb, h, h], [Z + 0.5, Z + 0.5, cz0, cz0]),
        c * sun * 0.95,
        CAR,
        Z + 0.3,
    )
    cv.poly(
        cam.project(
            [X0 + ci + 0.08, X1 - ci - 0.08, X1 - ci - 0.2, X0 + ci + 0.2],
            [hb + 0.05] * 2 + [h - 0.06] * 2,
            [Z + 0.52, Z + 0.52, cz0, cz0],
        ),
        glass,
        CAR,
        Z + 0.3,
    )
    # wheels under the body, lights, plate
    for xw in (X0 + 0.05, X1 - 0.3):
        cv.poly(
            cam.project([xw, xw + 0.25, xw + 0.25, xw], [0, 0, 0.3, 0.3], [Z + 0.1] * 4), (0.05, 0.05, 0.06), CAR, Z
        )
    lamp = (0.95, 0.92, 0.8) if facing else (0.85, 0.08, 0.05)
    for xl in (X0 + 0.08, X1 - 0.38):
        cv.poly(cam.project([xl, xl + 0.3, xl + 0.3, xl], [0.65, 0.65, 0.8, 0.8], [Z] * 4), lamp, CAR, Z)
    cv.poly(
        cam.project([X - 0.25, X + 0.25, X + 0.25, X - 0.25], [0.35, 0.35, 0.47, 0.47], [Z] * 4),
        (0.92, 0.92, 0.9),
        CAR,
        Z,
    )


def _draw_truck(cv, cam, o, pal, rng, light):
    X, Z = o["X"], o["Z"]
    w, h = rng.uniform(2.3, 2.55), rng.uniform(3.2, 3.9)
    Lbox, Lcab = rng.uniform(5, 8), 2.2
    sun = light["sun_front"]
    cbox, ccab = _pick(rng, pal["truck"]), _pick(rng, pal["truck"])
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + Lbox + Lcab, light)
    # cab behind the box (seen from the rear) or in front (oncoming)
    if o["facing"]:
        zc0, zb0 = Z, Z + Lcab + 0.3
    else:
        zb0, zc0 = Z, Z + Lbox + 0.3
    hc = 2.9
    items = sorted([(zc0, "cab"), (zb0, "box")], reverse=True)
    for z0, kind in items:
        if kind == "cab":
            xs = _box_faces(cv, cam, X0 + 0.05, X1 - 0.05, 0.5, hc, z0, z0 + Lcab, ccab * sun, ccab * sun * 0.8, TRUCK)
            glass = np.array([0.12, 0.15, 0.2], np.float32) + 0.2 * light["sky_top"]
            if xs is not None:
                cv.poly(
                    cam.project([xs] * 4, [1.6, 1.6, hc - 0.3, hc - 0.3], [z0 + 0.3, z0 + 1.4, z0 + 1.4, z0 + 0.3]),
                    glass,
                    TRUCK,
                    z0,
                )
                _wheels_side(cv, cam, xs, (z0 + 1.1,), 0.5, TRUCK)
            if o["facing"]:
                cv.poly(
                    cam.project([X0 + 0.2, X1 - 0.2, X1 - 0.2, X0 + 0.2], [1.6, 1.6, hc - 0.25, hc - 0.25], [z0] * 4),
                    glass,
                    TRUCK,
                    z0,
                )
        else:
            xs = _box_faces(cv, cam, X0, X1, 0.9, h, z0, z0 + Lbox, cbox * sun, cbox * sun * 0.8, TRUCK)
            if xs is not None:
                _wheels_side(cv, cam, xs, (z0 + 1.0, z0 + Lbox - 1.2), 0.5, TRUCK)
            if not o["facing"]:
                cv.line(
                    cam.project(X, 1.0, z0), cam.project(X, h - 0.1, z0), cbox * sun * 0.5, TRUCK, z0, cam.px(0.06, z0)
                )
    for xw in (X0 + 0.05, X1 - 0.45):
        cv.poly(
            cam.project([xw, xw + 0.4, xw + 0.4, xw], [0, 0, 0.95, 0.95], [Z + 0.2] * 4), (0.06, 0.06, 0.07), TRUCK, Z
        )


def _draw_bus_or_train(cv, cam, o, pal, rng, light, label):
    X, Z = o["X"], o["Z"]
    if label == BUS:
        w, h, L, hw0 = 2.55, rng.uniform(3.0, 3.3), rng.uniform(11, 13), 1.1
        c = _pick(rng, pal["bus"])
    else:
        w, h, L, hw0 = 2.65, 3.5, rng.uniform(25, 35), 1.3
        c = _pick(rng, pal["train"])
    sun = light["sun_front"]
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + L, light)
    y0 = 0.3 if label == BUS else 0.45
    xs = _box_faces(cv, cam, X0, X1, y0, h, Z, Z + L, c * sun, c * sun * 0.8, label)
    glass = np.array([0.10, 0.12, 0.16], np.float32) + 0.2 * light["sky_top"]
    stripe = c * 0.5 if label == BUS else np.array([0.75, 0.1, 0.1], np.float32)
    if xs is not None:
        pitch = 1.3 if label == BUS else 1.6
        for zz in np.arange(Z + 0.6, Z + L - 0.8, pitch):
            cv.poly(
                cam.project([xs] * 4, [hw0, hw0, h - 0.5, h - 0.5], [zz, zz + pitch - 0.25, zz + pitch - 0.25, zz]),
                glass,
                label,
                zz,
            )
        cv.poly(
            cam.project([xs] * 4, [y0 + 0.2, y0 + 0.2, y0 + 0.45, y0 + 0.45], [Z, Z + L, Z + L, Z]),
            stripe,
            label,
            Z + 1,
        )
        if label == BUS:
            _wheels_side(cv, cam, xs, (Z + 2.2, Z + L - 3.0), 0.5, label)
    # front / rear window
    cv.poly(
        cam.project([X0 + 0.15, X1 - 0.15, X1 - 0.15, X0 + 0.15], [hw0 + 0.3] * 2 + [h - 0.3] * 2, [Z] * 4),
        glass,
        label,
        Z,
    )
    if label == TRAIN:
        cv.line(
            cam.project(X, h, Z + 3),
            cam.project(X - 0.4, h + 1.2, Z + 4),
            (0.2, 0.2, 0.2),
            label,
            Z + 3,
            cam.px(0.05, Z),
        )
        cv.poly(
            cam.project([X0 + 0.2, X1 - 0.2, X1 - 0.2, X0 + 0.2], [y0 + 0.2] * 2 + [y0 + 0.45] * 2, [Z] * 4),
            stripe,
            label,
            Z,
        )
    lamp = (0.95, 0.92, 0.8) if o["facing"] else (0.85, 0.1, 0.05)
    for xl in (X0 + 0.15, X1 - 0.45):
        cv.poly(cam.project([xl, xl + 0.3, xl + 0.3, xl], [0.6, 0.6, 0.8, 0.8], [Z] * 4), lamp, label, Z)
    if label == BUS:
        for xw in (X0 + 0.05, X1 - 0.35):
            cv.poly(
                cam.project([xw, xw + 0.3, xw + 0.3, xw], [0, 0, 0.5, 0.5], [Z + 0.2] * 4), (0.05, 0.05, 0.06), BUS, Z
            )


def _draw_person(cv, cam, X, Z, rng, pal, light, label=PERSON, seated=False, Y0=0.0, d=1):
    hgt = rng.uniform(1.55, 1.9)
    shirt, trousers = _pick(rng, pal["clothes"]), _pick(rng, pal["clothes"])
    skin = _pick(rng, pal["skin"], 0.04)
    sun = light["sun_front"]
    if not seated:
        step = rng.uniform(-0.18, 0.18)
        for dx, st in ((-0.1, step), (0.1, -step)):
            cv.line(
                cam.project(X + dx, 0.85 * hgt / 1.75, Z),
                cam.project(X + dx + st, 0.05, Z),
                trousers * sun,
                label,
                Z,
                cam.px(0.15, Z),
            )
        ytor = 0.85 * hgt / 1.75
    else:
        ytor = Y0
        cv.line(
            cam.project(X, ytor, Z), cam.project(X + 0.3 * d, ytor - 0.55, Z), trousers * sun, label, Z, cam.px(0.14, Z)
        )
    ytop = ytor + 0.62 * hgt / 1.75
    lean = 0.25 * d if seated else 0.0
    cv.poly(
        cam.project([X - 0.2, X + 0.2, X + 0.2 + lean, X - 0.2 + lean], [ytor, ytor, ytop, ytop], [Z] * 4),
        shirt * sun,
        label,
        Z,
    )
    for dx in (-0.23, 0.23):
        arm_end = (X + dx + (0.45 * d if seated else 0.02), ytor + (0.15 if seated else 0.0))
        cv.line(
            cam.project(X + dx * 0.9 + lean, ytop - 0.05, Z),
            cam.project(*arm_end, Z),
            shirt * sun * 0.9,
            label,
            Z,
            cam.px(0.09, Z),
        )
    head = cam.project(X + lean, ytop + 0.13, Z)
    cv.ellipse(head, (cam.px(0.1, Z), cam.px(0.13, Z)), skin * sun, label, Z)
    if seated and label == RIDER and rng.random() < 0.7:  # helmet
        cv.ellipse(
            cam.project(X + lean, ytop + 0.18, Z),
            (cam.px(0.12, Z), cam.px(0.1, Z)),
            _pick(rng, pal["clothes"]),
            label,
            Z,
        )
    else:
        cv.ellipse(
            cam.project(X + lean, ytop + 0.2, Z),
            (cam.px(0.1, Z), cam.px(0.06, Z)),
            np.array([0.15, 0.1, 0.05], np.float32),
            label,
            Z,
        )


def _draw_twowheeler(cv, cam, o, pal, rng, light):
    X, Z, motor = o["X"], o["Z"], o["kind"] == "motorcycle"
    label = MOTO if motor else BIKE
    r = 0.32 if motor else 0.34
    sun = light["sun_front"]
    d = -1 if rng.random() < 0.5 else 1
    xa, xb = X - 0.6 * d, X + 0.6 * d
    tyre = max(cam.px(0.1 if motor else 0.06, Z), 1)
    frame = _pick(rng, pal["twowheel"])
    for xw in (xa, xb):
        c = cam.project(xw, r, Z)
        rad = cam.px(r, Z)
        cv.ellipse(c, (rad, rad), (0.06, 0.06, 0.07), label, Z, thickness=max(int(round(tyre)), 1))
    if motor:
        cv.poly(
            cam.project([xa + 0.1 * d, xb - 0.2 * d, xb - 0.35 * d, xa + 0.1 * d], [0.35, 0.45, 0.95, 0.8], [Z] * 4),
            frame * sun,
            label,
            Z,
        )
        cv.poly(
            cam.project([X - 0.35 * d, X + 0.2 * d, X + 0.2 * d, X - 0.35 * d], [0.55, 0.55, 0.75, 0.75], [Z] * 4),
            (0.25, 0.25, 0.27),
            label,
            Z,
        )
        cv.line(cam.project(xb, r, Z), cam.project(xb - 0.25 * d, 1.1, Z), (0.3, 0.3, 0.3), label, Z, cam.px(0.06, Z))
    else:
        th = max(cam.px(0.06, Z), 1)
        pts = {
            "rear": (xa, r),
            "crank": (X - 0.05 * d, r - 0.02),
            "seat": (X - 0.2 * d, 0.95),
            "head": (xb - 0.15 * d, 1.0),
            "front": (xb, r),
        }
        for a, b in (
            ("rear", "crank"),
            ("crank", "seat"),
            ("seat", "head"),
            ("head", "crank"),
            ("rear", "seat"),
            ("head", "front"),
        ):
            cv.line(cam.project(*pts[a], Z), cam.project(*pts[b], Z), frame * sun, label, Z, th)
        cv.line(cam.project(xb - 0.15 * d, 1.0, Z), cam.project(xb - 0.3 * d, 1.1, Z), (0.1, 0.1, 0.1), label, Z, th)
    if o.get("rider"):
        _draw_person(
            cv, cam, X - 0.3 * d, Z - 0.05, rng, pal, light, label=RIDER, seated=True, Y0=(0.9 if motor else 0.95), d=d
        )


def _draw_pole_group(cv, cam, o, pal, rng, light):
    X, Z, kind = o["X"], o["Z"], o["kind"]
    sun = light["sun_front"]
    pc = _pick(rng, pal["pole"])
    width = rng.uniform(0.12, 0.25)
    height = {
        "lamp": rng.uniform(6, 9),
        "light": rng.uniform(3.0, 4.2),
        "sign": rng.uniform(2.3, 3.2),
        "pole": rng.uniform(3, 8),
    }[kind]
    cv.poly(
        cam.project([X - width / 2, X + width / 2, X + width / 2, X - width / 2], [0, 0, height, height], [Z] * 4),
        pc * sun,
        POLE,
        Z,
    )
    if kind == "lamp":
        tox = -np.sign(X) * rng.uniform(1.0, 2.5)
        cv.line(
            cam.project(X, height - 0.1, Z), cam.project(X + tox, height + 0.2, Z), pc * sun, POLE, Z, cam.px(0.1, Z)
        )
        cv.poly(
            cam.project(
                [X + tox - 0.3, X + tox + 0.3, X + tox + 0.3, X + tox - 0.3],
                [height, height, height + 0.2, height + 0.2],
                [Z] * 4,
            ),
            pc * 0.8,
            POLE,
            Z,
        )
    elif kind == "light":
        n_heads = 2 if rng.random() < 0.5 else 1
        box = _pick(rng, pal["light_box"], 0.03)
        state = int(rng.integers(3))
        for j in range(n_heads):
            if j == 0:
                bx, by = X, height
            else:  # second head hanging from an arm over the road
                tox = -np.sign(X) * rng.uniform(2.5, 4.5)
                cv.line(
                    cam.project(X, height + 0.9, Z),
                    cam.project(X + tox, height + 0.9, Z),
                    pc * sun,
                    POLE,
                    Z,
                    cam.px(0.12, Z),
                )
                bx, by = X + tox, height - 0.2
            bw, bh = 0.45, 1.25
            cv.poly(
                cam.project(
                    [bx - bw / 2, bx + bw / 2, bx + bw / 2, bx - bw / 2], [by, by, by + bh, by + bh], [Z - 0.1] * 4
                ),
                box * sun,
                LIGHT,
                Z - 0.1,
            )
            for k, lamp in enumerate(((0.95, 0.1, 0.05), (0.95, 0.7, 0.05), (0.1, 0.9, 0.3))):
                on = k == state
                col = np.array(lamp, np.float32) * (1.0 if on else 0.25) + (0.0 if on else 0.05)
                cv.ellipse(
                    cam.project(bx, by + bh - 0.21 - k * 0.4, Z - 0.12),
                    (cam.px(0.13, Z), cam.px(0.13, Z)),
                    col,
                    LIGHT,
                    Z - 0.12,
                )
    elif kind == "sign":
        shape = int(rng.integers(4))
        sc = _pick(rng, pal["sign"], 0.03)
        cy, size = height + 0.4, rng.uniform(0.7, 1.1)
        centre = cam.project(X, cy, Z - 0.05)
        r = cam.px(size / 2, Z)
        if shape == 0:  # prohibition disc: red ring, white inside
            cv.ellipse(centre, (r, r), (0.85, 0.1, 0.1), SIGN, Z - 0.05)
            cv.ellipse(centre, (r * 0.72, r * 0.72), (0.95, 0.95, 0.95), SIGN, Z - 0.05)
        elif shape == 1:  # mandatory: blue disc
            cv.ellipse(centre, (r, r), (0.1, 0.3, 0.8), SIGN, Z - 0.05)
            cv.line(centre - [r * 0.5, 0], centre + [r * 0.5, 0], (0.95, 0.95, 0.95), SIGN, Z, max(r * 0.25, 1))
        elif shape == 2:  # warning triangle
            tri = centre + np.array([[0, -r], [r * 0.95, r * 0.7], [-r * 0.95, r * 0.7]])
            cv.poly(tri, (0.85, 0.1, 0.1), SIGN, Z - 0.05)
            cv.poly(centre + (tri - centre) * 0.6, (0.95, 0.95, 0.95), SIGN, Z - 0.05)
        else:  # square information sign
            cv.poly(centre + np.array([[-r, -r], [r, -r], [r, r], [-r, r]]), sc * sun, SIGN, Z - 0.05)
            cv.poly(centre + np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.6, (0.95, 0.95, 0.95), SIGN, Z - 0.05)


def _draw_tree(cv, cam, o, pal, rng, light):
    X, Z = o["X"], o["Z"]
    hgt = rng.uniform(4, 9)
    trunk = np.array([0.3, 0.22, 0.15], np.float32) * light["sun_front"]
    cv.poly(cam.project([X - 0.12, X + 0.12, X + 0.1, X - 0.1], [0, 0, hgt * 0.6, hgt * 0.6], [Z] * 4), trunk, VEG, Z)
    base = _pick(rng, pal["veg"])
    for _ in range(int(rng.integers(4, 8))):
        dx, dy = rng.uniform(-1.5, 1.5), hgt * rng.uniform(0.55, 0.95)
        rr = rng.uniform(0.9, 1.8)
        col = base * rng.uniform(0.75, 1.2) * light["sun_front"]
        cv.ellipse(cam.project(X + dx, dy, Z), (cam.px(rr, Z), cam.px(rr * 0.85, Z)), col, VEG, Z)


def _objects(rng: np.random.Generator, lay: dict, featured: int, cam: _Camera, height: int) -> List[dict]:
    """Objects with world positions; sorted far to near by the caller."""
    objs: List[dict] = []
    z_bottom = cam.f * cam.h / max(1.0, height - cam.yh)  # depth of the ground at the bottom image row
    z_min = max(4.0, 0.9 * z_bottom)
    z_max = min(lay["z_end"] - 2, 120.0)
    road_l, road_r = lay["road"]
    lane_w = lay["lane_w"]

    def zpos(lo=z_min, hi=z_max):
        # more objects near the camera (uniform in 1/Z would be too sparse near; use a power law)
        return float(lo + (hi - lo) * rng.random() ** 1.8)

    lane_centres = [k * lane_w for k in range(-lay["lanes_left"], lay["lanes_right"] + 1)]
    # vehicles in lanes
    n_veh = int(rng.integers(2, 8))
    wanted = [featured] if featured in (TRUCK, BUS, TRAIN) else []
    feat_lane, feat_z = None, None
    for i in range(n_veh + len(wanted)):
        kind = wanted[i] if i < len(wanted) else int(rng.choice([CAR] * 8 + [TRUCK, BUS]))
        lane = lane_centres[int(rng.integers(len(lane_centres)))] if lane_centres else 0.0
        if kind == TRAIN:
            lane = 0.0 if lay["rails"] else lane
        z = zpos(6.0 if kind != CAR else z_min)
        if i < len(wanted):  # the featured vehicle: fairly near, and nothing in front of it in its lane
            z = float(rng.uniform(z_min + 2, max(z_min + 3, min(35.0, z_max))))
            feat_lane, feat_z = lane, z
        elif lane == feat_lane and z < feat_z + 15:
            z = feat_z + float(rng.uniform(15, 40)) + (30 if kind == TRAIN else 0)
        jitter = 0.0 if kind == TRAIN else rng.uniform(-0.3, 0.3)
        objs.append(dict(type="vehicle", label=kind, X=lane + jitter, Z=z, facing=lane < 0))
    # parked cars along the kerb
    for edge in (road_l, road_r):
        if rng.random() < 0.6:
            z = zpos(5.0, 40.0)
            for _ in range(int(rng.integers(1, 5))):
                objs.append(dict(type="vehicle", label=CAR, X=edge - np.sign(edge) * 1.2, Z=z, facing=edge < 0))
                z += rng.uniform(5.0, 8.0)
    # pedestrians on sidewalks, sometimes crossing
    for _ in range(int(rng.integers(2, 10))):
        side = lay["left" if rng.random() < 0.5 else "right"]
        a, b = sorted(side["sidewalk"])
        x = rng.uniform(a + 0.3, b - 0.3) if rng.random() < 0.85 else rng.uniform(road_l, road_r)
        objs.append(dict(type="person", X=x, Z=zpos(4.0, 35.0)))
    # two-wheelers: riders on the road edge or bike lane, parked ones on the sidewalk
    n2 = int(rng.integers(1, 3)) + (2 if featured in (MOTO, BIKE, RIDER) else 0)
    for i in range(n2):
        kind = "motorcycle" if (featured == MOTO and i == 0) or (featured != BIKE and rng.random() < 0.4) else "bicycle"
        ridden = rng.random() < 0.7 or (featured == RIDER and i == 0)
        if ridden:
            x = road_r - rng.uniform(0.6, 1.5) if rng.random() < 0.7 else rng.uniform(road_l + 1, road_r - 1)
        else:
            side = lay["left" if rng.random() < 0.5 else "right"]
            a, b = sorted(side["sidewalk"])
            x = rng.uniform(a + 0.5, b - 0.5)
        objs.append(dict(type="twowheel", kind=kind, rider=ridden, X=x, Z=zpos(4.0, 25.0)))
    # poles, lamps, lights, signs on the sidewalks
    for side in ("left", "right"):
        s = lay[side]
        x = s["sidewalk"][0] + np.sign(s["sidewalk"][0] or 1) * 0.5
        z = rng.uniform(3.0, 12.0)
        while z < z_max:
            kind = str(rng.choice(["lamp", "sign", "light", "pole", "sign"]))
            objs.append(dict(type="pole", kind=kind, X=x, Z=z))
            z += rng.uniform(8, 25)
    if featured == LIGHT or rng.random() < 0.7:
        objs.append(dict(type="pole", kind="light", X=lay["right"]["sidewalk"][0] + 0.5, Z=zpos(6.0, 25.0)))
    # trees on terrain strips / sidewalks
    for side in ("left", "right"):
        s = lay[side]
        if rng.random() < 0.5:
            xt = s["sidewalk"][1] + np.sign(s["sidewalk"][1]) * (s["terrain"] / 2 if s["terrain"] else -0.6)
            z = rng.uniform(5, 15)
            while z < z_max * 0.8:
                objs.append(dict(type="tree", X=xt, Z=z))
                z += rng.uniform(7, 15)
    return objs


# --------------------------------------------------------------------------------------------------
# Illumination and camera effects
# --------------------------------------------------------------------------------------------------
def _illumination(rng, style) -> dict:
    pal = style["palette"]
    kind = str(rng.choice(style["illumination"]))
    sun_side = rng.uniform(*style["sun"])
    left_lit = rng.random() < 0.5
    light = dict(
        kind=kind,
        sky_top=_pick(rng, pal["sky_top"]),
        sky_horizon=_pick(rng, pal["sky_horizon"], 0.03),
        clouds=rng.uniform(0.0, 0.35),
        cloud_colour=np.array([0.97, 0.97, 0.98], np.float32),
        sun_left=1.0 if left_lit else sun_side,
        sun_right=sun_side if left_lit else 1.0,
        sun_front=1.0,
        shadow=rng.uniform(0.3, 0.5) if style["shadows"] else 0.12,
        exposure=1.0,
        cast=np.ones(3, np.float32),
    )
    if kind == "overcast":
        light.update(
            sky_top=np.array([0.78, 0.8, 0.82], np.float32),
            sky_horizon=np.array([0.88, 0.89, 0.9], np.float32),
            clouds=0.0,
            sun_left=0.95,
            sun_right=0.95,
            shadow=0.05,
            exposure=0.9,
        )
    elif kind == "dusk":
        light.update(
            sky_top=np.array([0.35, 0.35, 0.6], np.float32),
            sky_horizon=np.array([0.95, 0.6, 0.35], np.float32),
            cloud_colour=np.array([0.9, 0.6, 0.5], np.float32),
            exposure=0.7,
            cast=np.array([1.1, 0.92, 0.8], np.float32),
        )
    elif kind == "night":
        light.update(
            sky_top=np.array([0.03, 0.04, 0.08], np.float32),
            sky_horizon=np.array([0.15, 0.13, 0.15], np.float32),
            clouds=0.0,
            shadow=0.0,
            exposure=0.45,
            cast=np.array([1.05, 0.95, 0.85], np.float32),
        )
    return light


def _post_process(cv: _Canvas, cam: _Camera, rng, style, light) -> np.ndarray:
    """Domain effects on the rendered float image -> uint8 BGR (the label is changed only by roll / hood)."""
    H, W = cv.h, cv.w
    # texture detail pass: per-class amplitude of fine and coarse noise
    amp = _TEX[cv.lab] * style["texture"]
    fine = cv2.GaussianBlur(rng.random((H, W), dtype=np.float32) * 3.6 - 1.8, (0, 0), 0.7)
    coarse = _noise(rng, H, W, 10)
    gain = 1 + amp[..., 0] * fine + amp[..., 1] * coarse
    # illumination
    img = cv.img * (gain[..., None] * (light["exposure"] * light["cast"]).astype(np.float32))
    if light["kind"] == "night":  # street lamps and headlights: warm glow near the bottom
        ys = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        img += (0.25 * img.mean()) * np.array([1.0, 0.8, 0.5], np.float32) * np.exp(-((ys - 0.9) ** 2) / 0.02)
    # fog (depth dependent)
    beta = rng.uniform(*style["fog"])
    if beta > 0:
        t = np.exp(-beta * np.minimum(cv.depth, 1e3))[..., None]
        fog_c = np.float32(rng.uniform(0.7, 0.85) * light["exposure"])
        img = img * t + fog_c * (1 - t)
    # saturation, hue, contrast, colour cast, gamma
    grey = img @ np.full((3, 1), 1 / 3, np.float32)
    img = grey + (img - grey) * np.float32(rng.uniform(*style["sat"]))
    if style["hue"] > 0:
        hsv = cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-style["hue"], style["hue"]), 360)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = img.mean()
    img = mean + (img - mean) * np.float32(rng.uniform(*style["contrast"]))
    if style["cast"] > 0:
        img *= (1 + rng.uniform(-style["cast"], style["cast"], 3)).astype(np.float32)
    gamma = rng.uniform(*style["gamma"])
    img = np.clip(img, 0, 1)
    if abs(gamma - 1) > 1e-6:
        img = img ** np.float32(gamma)
    # glare (windscreen) and vignetting
    ys = ((np.arange(H, dtype=np.float32) - H / 2) / (H / 2))[:, None]
    xs = ((np.arange(W, dtype=np.float32) - W / 2) / (W / 2))[None, :]
    if style["glare"] and rng.random() < 0.5:
        gx, gy = rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.2)
        g = np.exp(-(((xs - gx) / 0.6) ** 2 + ((ys - gy) / 0.6) ** 2))
        img += 0.25 * g[..., None]
    if style["vignette"] > 0:
        img *= (1 - style["vignette"] * 0.5 * (xs**2 + ys**2))[..., None]
    # blur (optics, motion), sensor noise
    sigma = rng.uniform(*style["blur"])
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    lo, hi = style["motion"]
    if hi > 0:
        k = int(rng.integers(lo, hi + 1))
        if k > 1:
            img = cv2.blur(img, (k, 1))
    ns = rng.uniform(*style["noise"])
    if ns > 0:
        # approximately Gaussian (sum of two uniforms, unit variance): luminance + weaker chroma noise
        lum = (rng.random((H, W, 1), dtype=np.float32) + rng.random((H, W, 1), dtype=np.float32) - 1) * 2.449
        chroma = rng.random((H, W, 3), dtype=np.float32) - 0.5
        img += lum * np.float32(ns) + chroma * np.float32(ns * 1.73)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out[..., ::-1].copy()  # RGB -> BGR for cv2


def _apply_roll(bgr: np.ndarray, lab: np.ndarray, degrees: float):
    H, W = lab.shape
    M = cv2.getRotationMatrix2D((W / 2, H / 2), degrees, 1.0)
    bgr = cv2.warpAffine(bgr, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lab2 = cv2.warpAffine(
        lab, M, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_LABEL
    )
    # pixels filled by reflection are not the labelled scene: ignore them
    valid = cv2.warpAffine(np.ones_like(lab), M, (W, H), flags=cv2.INTER_NEAREST, borderValue=0)
    lab2[valid == 0] = IGNORE_LABEL
    return bgr, lab2


def _draw_hood(cv: _Canvas, rng, frac: float, light) -> None:
    """Ego-vehicle bonnet at the bottom of the frame, labelled ignore (as Cityscapes' ego vehicle)."""
    if frac <= 0.01:
        return
    H, W = cv.h, cv.w
    top = H * (1 - frac)
    bulge = rng.uniform(0.3, 0.6) * frac * H
    xs = np.linspace(-20, W + 20, 40)
    ys = top + bulge * ((xs - W / 2) / (W / 2)) ** 2
    pts = np.concatenate([np.stack([xs, ys], 1), [[W + 20, H + 5], [-20, H + 5]]])
    c = np.array([0.1, 0.1, 0.12], np.float32) + 0.2 * light["sky_horizon"]
    cv.poly(pts, c, IGNORE_LABEL, 0.5)


# --------------------------------------------------------------------------------------------------
# Rendering one image
# --------------------------------------------------------------------------------------------------
def _check_size(size) -> Tuple[int, int]:
    try:
        W, H = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (width, height) integers, got {size!r}") from None
    if W < 64 or H < 32 or W > 4096 or H > 4096:
        raise ValueError(f"size: expected width in [64, 4096] and height in [32, 4096], got {W}x{H}")
    return W, H


def _check_domain(domain: str) -> str:
    if domain not in _STYLES:
        raise ValueError(f"domain: expected one of {DOMAINS}, got {domain!r}")
    return domain


def render_scene(domain: str, index: int, size=(512, 256), seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Render scene ``index`` of ``domain``.

    Args:
        domain: one of :data:`DOMAINS`.
        index: image index (>= 0); selects the layout and the featured rare class.
        size: ``(width, height)`` in pixels.
        seed: global seed; the result depends only on ``(seed, domain, index, size)``.
    Returns:
        ``(image, label)``: (H, W, 3) uint8 **BGR** (cv2 order) and (H, W) uint8 trainIds (255 = ignore).
    """
    _check_domain(domain)
    W, H = _check_size(size)
    if int(index) < 0 or int(seed) < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    style = _STYLES[domain]
    rng = np.random.default_rng([int(seed), DOMAINS.index(domain), int(index), GENERATOR_VERSION])
    featured = _FEATURED[int(index) % len(_FEATURED)]
    pal = style["palette"]

    cam = _Camera(
        f=rng.uniform(*style["focal"]) * W,
        h=rng.uniform(*style["cam_h"]),
        yh=rng.uniform(*style["horizon"]) * H,
        vx=W / 2 + rng.uniform(-0.06, 0.06) * W,
    )
    light = _illumination(rng, style)
    lay = _layout(rng, featured)
    cv = _Canvas(H, W)
    _draw_sky(cv, cam, pal, rng, light)
    _draw_skyline(cv, cam, pal, rng, light)
    _draw_ground(cv, cam, lay, pal, rng, style)
    _draw_street_end(cv, cam, lay, pal, rng, light)
    _draw_facades(cv, cam, lay, pal, rng, light, style)

    objs = _objects(rng, lay, featured, cam, H)
    objs.sort(key=lambda o: -o["Z"])
    for o in objs:
        orng = np.random.default_rng(rng.integers(1 << 62))
        t = o["type"]
        if t == "vehicle":
            if o["label"] == CAR:
                _draw_car(cv, cam, o, pal, orng, light)
            elif o["label"] == TRUCK:
                _draw_truck(cv, cam, o, pal, orng, light)
            else:
                _draw_bus_or_train(cv, cam, o, pal, orng, light, o["label"])
        elif t == "person":
            _draw_person(cv, cam, o["X"], o["Z"], orng, pal, light)
        elif t == "twowheel":
            _draw_twowheeler(cv, cam, o, pal, orng, light)
        elif t == "pole":
            _draw_pole_group(cv, cam, o, pal, orng, light)
        elif t == "tree":
            _draw_tree(cv, cam, o, pal, orng, light)
    if style["hood"] is not None:
        _draw_hood(cv, rng, rng.uniform(*style["hood"]), light)
    cv.img = np.clip(cv.img, 0, 1.5)
    bgr = _post_process(cv, cam, rng, style, light)
    lab = cv.lab
    if style["roll"] > 0:
        bgr, lab = _apply_roll(bgr, lab, rng.uniform(-style["roll"], style["roll"]))
    return bgr, lab


# --------------------------------------------------------------------------------------------------
# On-disk layouts
# --------------------------------------------------------------------------------------------------
def _name(domain: str, index: int, seed: int) -> Tuple[str, ...]:
    """(image relpath, label relpath[, extra label relpath]) of image ``index`` inside the domain root."""
    i = int(index)
    if domain == "source":
        return (f"images/{i + 1:05d}.png", f"labels/{i + 1:05d}_labelTrainIds.png")
    if domain == "target_cityscapes":
        city = _CITIES[i % len(_CITIES)]
        stem = f"{city}_{i // len(_CITIES):06d}_{19:06d}"
        return (f"leftImg8bit/val/{city}/{stem}_leftImg8bit.png", f"gtFine/val/{city}/{stem}_gtFine_labelTrainIds.png")
    if domain == "target_bdd":
        h = (i * 2654435761 + seed * 40503) % (1 << 32)
        stem = f"{h:08x}-{i:08d}"
        return (f"images/10k/val/{stem}.jpg", f"labels/sem_seg/masks/val/{stem}.png")
    if domain == "target_mapillary":
        stem = f"synth{seed:04d}_{i:06d}"
        return (
            f"validation/images/{stem}.jpg",
            f"validation/labels/{stem}_labelTrainIds.png",
            f"cityscapes_trainIdLabel/val/label/{stem}.png",
        )
    raise ValueError(f"domain: expected one of {DOMAINS}, got {domain!r}")


def domain_files(domain: str, num_images: int, seed: int = 0) -> List[Tuple[str, ...]]:
    """Relative paths ``(image, label[, label copy])`` that :func:`generate_domain` writes, in index order."""
    _check_domain(domain)
    return [_name(domain, i, seed) for i in range(int(num_images))]


def _write_one(args) -> Tuple[int, List[int]]:
    root, domain, index, size, seed, jpeg_q = args
    bgr, lab = render_scene(domain, index, size, seed)
    paths = _name(domain, index, seed)
    for rel in paths:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    img_path = os.path.join(root, paths[0])
    if img_path.endswith(".jpg"):
        ok = cv2.imwrite(img_path, bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_q)])
    else:
        ok = cv2.imwrite(img_path, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    for rel in paths[1:]:
        ok = ok and cv2.imwrite(os.path.join(root, rel), lab, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"cv2.imwrite failed under {root} for image {index} of {domain}")
    counts = np.bincount(lab.ravel(), minlength=256)
    return index, [int(c) for c in counts[:NUM_CLASSES]]


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


#: Rare-class statistics file and format of :mod:`mfuser.data.samplers` (``RCS_STATS_FILENAME`` /
#: ``RCS_STATS_FORMAT`` there; repeated here so that generating data does not import torch / detectron2;
#: tests/data/test_synthetic.py checks that the file loads through ``load_class_stats``).
RCS_STATS_FILENAME = "rcs_class_stats.json"
RCS_STATS_FORMAT = "mfuser-rcs-class-stats-v1"


def _write_rcs_stats(root: str, files: List[Tuple[str, ...]], counts: List[List[int]]) -> None:
    """Per-label class pixel counts for rare-class sampling, label paths relative to ``root``."""
    labels = {paths[1]: [int(v) for v in cnt] for paths, cnt in zip(files, counts)}
    payload = {"format": RCS_STATS_FORMAT, "num_classes": NUM_CLASSES, "split": "", "labels": labels}
    _write_json(os.path.join(root, RCS_STATS_FILENAME), payload)


def _params(domain: str, num_images: int, size, seed: int) -> dict:
    W, H = _check_size(size)
    return dict(domain=domain, num_images=int(num_images), size=[W, H], seed=int(seed), version=GENERATOR_VERSION)


def generate_domain(root: str, domain: str, num_images: int, size=(512, 256), seed: int = 0, workers: int = 1) -> dict:
    """Render ``num_images`` scenes of ``domain`` into ``root`` (the dataset root of that domain).

    Files are written in the layout of the real dataset (see the module docstring); the completion marker
    ``root/.synthetic_complete.json`` is written last and holds the parameters and the per-class pixel
    counts (``class_pixels``, list of 19 ints). Existing files with the same names are overwritten; other
    files in ``root`` are left alone.

    Returns:
        the marker dict: ``{"domain", "num_images", "size", "seed", "version", "class_pixels", "files"}``,
        ``files`` being the ``[image, label, ...]`` paths relative to ``root``.
    """
    _check_domain(domain)
    if int(num_images) < 1:
        raise ValueError(f"num_images: expected >= 1, got {num_images}")
    if int(workers) < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    params = _params(domain, num_images, size, seed)
    os.makedirs(root, exist_ok=True)
    marker = os.path.join(root, _MARKER)
    if os.path.exists(marker):
        os.remove(marker)
    jq = _STYLES[domain]["jpeg"]
    qrng = np.random.default_rng([int(seed), DOMAINS.index(domain), 7919])
    jpeg_q = [int(q) for q in qrng.integers(jq[0], jq[1] + 1, int(num_images))] if jq else [95] * int(num_images)
    jobs = [(root, domain, i, tuple(params["size"]), int(seed), jpeg_q[i]) for i in range(int(num_images))]
    counts: List[List[int]] = [None] * len(jobs)  # type: ignore[list-item]
    if int(workers) > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            for i, cnt in ex.map(_write_one, jobs, chunksize=8):
                counts[i] = cnt
    else:
        for job in jobs:
            i, cnt = _write_one(job)
            counts[i] = cnt
    files = domain_files(domain, num_images, seed)
    if domain == "source":
        _write_rcs_stats(root, files, counts)
    total = np.sum(np.asarray(counts, np.int64), 0)
    out = dict(params, class_pixels=[int(v) for v in total], files=[list(f) for f in files])
    _write_json(marker, out)
    return out


def _is_complete(root: str, params: dict) -> bool:
    m = _read_json(os.path.join(root, _MARKER))
    if not isinstance(m, dict) or any(m.get(k) != v for k, v in params.items()):
        return False
    return all(os.path.isfile(os.path.join(root, rel)) for f in m.get("files", []) for rel in f)


def generate_all(
    root: str,
    num_source: int = 400,
    num_target: int = 100,
    size=(512, 256),
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    domains: Sequence[str] = DOMAINS,
) -> Dict[str, str]:
    """Generate the source and every target domain under ``root``; return ``{domain: domain_root}``.

    ``root/<domain>/`` is the dataset root of each domain (pass it to the dataset loaders).

    Re-running is cheap and safe:

    * ``root`` missing or empty: generate everything.
    * ``root`` holds a previous generation with the same parameters: domains whose completion marker
      matches (and whose files exist) are skipped, the others (e.g. after an interruption) are regenerated.
    * ``root`` holds anything else (other files, or a generation with other parameters): refuse with
      :class:`FileExistsError`, unless ``overwrite``, which deletes the domain folders and the markers
      (and nothing else) before generating.
    """
    domains = tuple(domains)
    for d in domains:
        _check_domain(d)
    if int(num_source) < 1 or int(num_target) < 1:
        raise ValueError(f"num_source and num_target must be >= 1, got {num_source}, {num_target}")
    W, H = _check_size(size)
    manifest = dict(
        num_source=int(num_source),
        num_target=int(num_target),
        size=[W, H],
        seed=int(seed),
        version=GENERATOR_VERSION,
        domains=list(domains),
    )
    man_path = os.path.join(root, _MANIFEST)
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"root: {root} exists and is not a directory")
    existing = os.listdir(root) if os.path.isdir(root) else []
    if existing:
        same = _read_json(man_path) == manifest
        if not same and not overwrite:
            raise FileExistsError(
                f"root: {root} is not empty and does not hold a synthetic generation with these parameters "
                f"({manifest}); pass overwrite=True (--overwrite) to replace it, or choose another directory"
            )
        if not same:
            for name in list(DOMAINS) + [_MANIFEST, _MARKER]:
                p = os.path.join(root, name)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)
    os.makedirs(root, exist_ok=True)
    if os.path.exists(os.path.join(root, _MARKER)) and _read_json(man_path) == manifest:
        top = _read_json(os.path.join(root, _MARKER))
        if isinstance(top, dict) and all(
            _is_complete(os.path.join(root, d), _params(d, num_source if d == "source" else num_target, (W, H), seed))
            for d in domains
        ):
            return {d: os.path.join(root, d) for d in domains}
    if os.path.exists(os.path.join(root, _MARKER)):
        os.remove(os.path.join(root, _MARKER))
    _write_json(man_path, manifest)
    out = {}
    for d in domains:
        droot = os.path.join(root, d)
        n = num_source if d == "source" else num_target
        params = _params(d, n, (W, H), seed)
        if not _is_complete(droot, params):
            if os.path.isdir(droot):
                shutil.rmtree(droot)
            generate_domain(droot, d, n, (W, H), seed, workers)
        out[d] = droot
    _write_json(os.path.join(root, _MARKER), dict(manifest, roots={d: d for d in domains}))
    return out


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------
def class_histogram(label_paths: Sequence[str], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Pixel count per class over trainId label PNGs (ignore excluded); shape (num_classes,) int64."""
    hist = np.zeros(num_classes, np.int64)
    for p in label_paths:
        lab = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            raise ValueError(f"label_paths: cannot read {p} as a single-channel label PNG")
        hist += np.bincount(lab.ravel(), minlength=256)[:num_classes].astype(np.int64)
    return hist


def majority_class_baseline(source_hist: Sequence[int], target_hist: Sequence[int]) -> dict:
    """mIoU (%) of predicting the most frequent source class at every labelled target pixel.

    Uses detectron2 ``SemSegEvaluator``'s averaging: the mean over classes that occur in the target
    ground truth or in the prediction. With a constant prediction ``c`` the IoU of ``c`` is
    ``n_c / N`` and every other class scores 0.

    Returns:
        ``{"class": trainId, "class_name": str, "mIoU": float, "pixel_accuracy": float}``.
    """
    s = np.asarray(source_hist, np.float64)
    t = np.asarray(target_hist, np.float64)
    if s.shape != t.shape or s.ndim != 1 or s.sum() <= 0 or t.sum() <= 0:
        raise ValueError(
            f"source_hist / target_hist: expected two non-empty 1-D histograms of equal length, "
            f"got shapes {s.shape} and {t.shape}"
        )
    c = int(np.argmax(s))
    present = t > 0
    present[c] = True
    iou_c = t[c] / t.sum()
    return dict(
        **{"class": c},
        class_name=CITYSCAPES_CLASSES[c] if len(s) == NUM_CLASSES else str(c),
        mIoU=float(100 * iou_c / present.sum()),
        pixel_accuracy=float(100 * t[c] / t.sum()),
    )
