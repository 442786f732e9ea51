"""Illumination and sensor effects: what turns the same kind of scene into the look of each domain.

:func:`illumination` draws the lighting of one image (sky colours, clouds, which street side is in the
sun, shadow strength, exposure and colour cast) from the domain's ``illumination`` kinds; the drawing
functions read it. After drawing, :func:`draw_hood` adds the ego-vehicle bonnet (label ignore),
:func:`post_process` applies the per-class surface texture, exposure, night glow, depth-dependent fog,
saturation, hue, contrast, colour cast, gamma, glare, vignetting, optical and motion blur and sensor noise
(image only), and :func:`apply_roll` rotates image and label together. Every amount comes from the
domain's :class:`~.styles.DomainStyle`.
"""

import cv2
import numpy as np

from ..classes import IGNORE_LABEL
from .canvas import (
    BIKE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    LIGHT,
    MOTO,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRAIN,
    TRUCK,
    VEG,
    WALL,
    Camera,
    Canvas,
    pick_colour,
    value_noise,
)
from .styles import DomainStyle

__all__ = ["illumination", "post_process", "apply_roll", "draw_hood"]

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
# Illumination and camera effects
# --------------------------------------------------------------------------------------------------
def illumination(rng, style: DomainStyle) -> dict:
    """Lighting of one image: ``kind`` (day / overcast / dusk / night), ``sky_top``, ``sky_horizon``,
    ``clouds`` (cover), ``cloud_colour``, ``sun_left`` / ``sun_right`` / ``sun_front`` (brightness of the
    facades and of surfaces facing the camera), ``shadow`` (darkening under vehicles), ``exposure``, ``cast``
    (RGB gain)."""
    pal = style.palette
    kind = str(rng.choice(style.illumination))
    sun_side = rng.uniform(*style.sun)
    left_lit = rng.random() < 0.5
    light = dict(
        kind=kind,
        sky_top=pick_colour(rng, pal["sky_top"]),
        sky_horizon=pick_colour(rng, pal["sky_horizon"], 0.03),
        clouds=rng.uniform(0.0, 0.35),
        cloud_colour=np.array([0.97, 0.97, 0.98], np.float32),
        sun_left=1.0 if left_lit else sun_side,
        sun_right=sun_side if left_lit else 1.0,
        sun_front=1.0,
        shadow=rng.uniform(0.3, 0.5) if style.shadows else 0.12,
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


def post_process(cv: Canvas, cam: Camera, rng, style: DomainStyle, light: dict) -> np.ndarray:
    """Domain effects on the rendered float image -> uint8 BGR (the label is changed only by roll / hood)."""
    H, W = cv.h, cv.w
    # texture detail pass: per-class amplitude of fine and coarse noise
    amp = _TEX[cv.lab] * style.texture
    fine = cv2.GaussianBlur(rng.random((H, W), dtype=np.float32) * 3.6 - 1.8, (0, 0), 0.7)
    coarse = value_noise(rng, H, W, 10)
    gain = 1 + amp[..., 0] * fine + amp[..., 1] * coarse
    # illumination
    img = cv.img * (gain[..., None] * (light["exposure"] * light["cast"]).astype(np.float32))
    if light["kind"] == "night":  # street lamps and headlights: warm glow near the bottom
        ys = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        img += (0.25 * img.mean()) * np.array([1.0, 0.8, 0.5], np.float32) * np.exp(-((ys - 0.9) ** 2) / 0.02)
    # fog (depth dependent)
    beta = rng.uniform(*style.fog)
    if beta > 0:
        t = np.exp(-beta * np.minimum(cv.depth, 1e3))[..., None]
        fog_c = np.float32(rng.uniform(0.7, 0.85) * light["exposure"])
        img = img * t + fog_c * (1 - t)
    # saturation, hue, contrast, colour cast, gamma
    grey = img @ np.full((3, 1), 1 / 3, np.float32)
    img = grey + (img - grey) * np.float32(rng.uniform(*style.sat))
    if style.hue > 0:
        hsv = cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-style.hue, style.hue), 360)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = img.mean()
    img = mean + (img - mean) * np.float32(rng.uniform(*style.contrast))
    if style.cast > 0:
        img *= (1 + rng.uniform(-style.cast, style.cast, 3)).astype(np.float32)
    gamma = rng.uniform(*style.gamma)
    img = np.clip(img, 0, 1)
    if abs(gamma - 1) > 1e-6:
        img = img ** np.float32(gamma)
    # glare (windscreen) and vignetting
    ys = ((np.arange(H, dtype=np.float32) - H / 2) / (H / 2))[:, None]
    xs = ((np.arange(W, dtype=np.float32) - W / 2) / (W / 2))[None, :]
    if style.glare and rng.random() < 0.5:
        gx, gy = rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.2)
        g = np.exp(-(((xs - gx) / 0.6) ** 2 + ((ys - gy) / 0.6) ** 2))
        img += 0.25 * g[..., None]
    if style.vignette > 0:
        img *= (1 - style.vignette * 0.5 * (xs**2 + ys**2))[..., None]
    # blur (optics, motion), sensor noise
    sigma = rng.uniform(*style.blur)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    lo, hi = style.motion
    if hi > 0:
        k = int(rng.integers(lo, hi + 1))
        if k > 1:
            img = cv2.blur(img, (k, 1))
    ns = rng.uniform(*style.noise)
    if ns > 0:
        # approximately Gaussian (sum of two uniforms, unit variance): luminance + weaker chroma noise
        lum = (rng.random((H, W, 1), dtype=np.float32) + rng.random((H, W, 1), dtype=np.float32) - 1) * 2.449
        chroma = rng.random((H, W, 3), dtype=np.float32) - 0.5
        img += lum * np.float32(ns) + chroma * np.float32(ns * 1.73)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out[..., ::-1].copy()  # RGB -> BGR for cv2


def apply_roll(bgr: np.ndarray, lab: np.ndarray, degrees: float):
    """Rotate image (bilinear, reflected border) and label (nearest) about the centre; the border is ignore."""
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


def draw_hood(cv: Canvas, rng, frac: float, light) -> None:
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

