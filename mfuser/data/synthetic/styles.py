"""How each domain looks: the :class:`DomainStyle` dataclass, the colour palettes and :data:`STYLES`.

A style holds everything that differs between the domains: the palette the scene is painted with, the
camera (height, horizon, focal length, roll), the illumination (weather / time of day, sun, shadows) and
the sensor effects applied after drawing (texture, colour, blur, noise, fog, vignetting, bonnet, JPEG).
The scene itself (layout, objects, drawing order) is the same for every domain; see the package
docstring of :mod:`mfuser.data.synthetic` for what each target changes and why.
"""

from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import numpy as np

__all__ = ["DOMAINS", "TARGET_DOMAINS", "DomainStyle", "STYLES", "check_domain"]

#: Source domain first, then the targets; the keys are also the sub-folder names under the root.
DOMAINS: Tuple[str, ...] = ("source", "target_cityscapes", "target_bdd", "target_mapillary")
TARGET_DOMAINS: Tuple[str, ...] = DOMAINS[1:]


@dataclass(frozen=True, eq=False)
class DomainStyle:
    """Rendering style of one domain. Ranges are ``(low, high)``; each image draws its values uniformly.

    Camera (:class:`~mfuser.data.synthetic.canvas.Camera`): ``cam_h`` height in metres, ``horizon`` row
    as a fraction of the image height, ``focal`` length as a fraction of the image width, ``roll`` the
    largest camera roll in degrees (0: none; image and label are rotated together, the uncovered border
    is labelled ignore).

    Illumination (:func:`~mfuser.data.synthetic.effects.illumination`): ``illumination`` the kinds drawn
    from (``"day"``, ``"overcast"``, ``"dusk"``, ``"night"``; repeat one to weight it), ``sun`` the
    brightness of the shadowed street side (the lit side is 1), ``shadows`` hard vehicle shadows (else
    faint ones).

    Sensor effects (:func:`~mfuser.data.synthetic.effects.post_process`): ``texture`` scale of the
    per-class surface texture, ``sat`` saturation factor, ``hue`` largest hue shift in degrees,
    ``contrast`` factor, ``cast`` largest per-channel colour cast, ``gamma``, ``glare`` windscreen glare
    (in half of the images), ``vignette`` strength, ``blur`` Gaussian sigma in pixels, ``motion``
    horizontal motion-blur length in pixels (``(0, 0)``: none), ``noise`` sensor-noise standard
    deviation (image in [0, 1]), ``fog`` density per metre, ``hood`` height of the ego-vehicle bonnet as
    a fraction of the image height (``None``: no bonnet).

    Output: ``jpeg`` quality range (inclusive) for the domains written as JPEG, ``None`` for PNG.

    ``palette`` maps a surface name (``"sky_top"``, ``"road"``, ``"car"``, ...) to an (N, 3) float32 array
    of RGB colours in [0, 1]; each object picks one and jitters it
    (:func:`~mfuser.data.synthetic.canvas.pick_colour`).
    """

    palette: Mapping[str, np.ndarray]
    cam_h: Tuple[float, float]
    horizon: Tuple[float, float]
    focal: Tuple[float, float]
    roll: float
    texture: float
    sun: Tuple[float, float]
    shadows: bool
    sat: Tuple[float, float]
    gamma: Tuple[float, float]
    cast: float
    noise: Tuple[float, float]
    blur: Tuple[float, float]
    motion: Tuple[int, int]
    fog: Tuple[float, float]
    vignette: float
    hood: Tuple[float, float] | None
    illumination: Tuple[str, ...]
    jpeg: Tuple[int, int] | None
    hue: float
    contrast: Tuple[float, float]
    glare: bool


# --------------------------------------------------------------------------------------------------
# Palettes
# --------------------------------------------------------------------------------------------------
def _rgb(*hexes: str) -> np.ndarray:
    """(N, 3) float32 RGB in [0, 1] from hex strings such as ``"3a78e0"``."""
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

#: Per-domain rendering style (see :class:`DomainStyle` for the units of each field).
STYLES: Dict[str, DomainStyle] = {
    "source": DomainStyle(
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
    "target_cityscapes": DomainStyle(
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
    "target_bdd": DomainStyle(
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
    "target_mapillary": DomainStyle(
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


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is one of :data:`DOMAINS`, else raise ``ValueError`` naming them."""
    if domain not in STYLES:
        raise ValueError(f"domain: expected one of {DOMAINS}, got {domain!r}")
    return domain
