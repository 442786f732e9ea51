"""Procedurally generated street scenes with per-pixel labels, in one source and three target domains.

A small, download-free stand-in for the synthetic-to-real benchmark (GTA5 -> Cityscapes / BDD100K /
Mapillary). Every image is a perspective street scene rendered from a random 3D layout; the label is
drawn with the same primitives in the same order (painter's algorithm, far to near), so occlusion is
consistent between image and label. All 19 Cityscapes classes (trainIds of :mod:`mfuser.data.classes`)
occur; ``255`` (ignore) marks only the ego-vehicle bonnet and the border left by camera roll.

Modules, in the order an image is made:

* :mod:`.styles`: how each domain looks (:class:`DomainStyle`: palette, camera, illumination, sensor
  effects) and :data:`DOMAINS`;
* :mod:`.canvas`: drawing primitives that write image, label and depth together, the pinhole camera;
* :mod:`.layout`: the random street (lanes, sidewalks, facades) and the objects placed on it;
* :mod:`.street` and :mod:`.objects`: drawing the static layers and the objects;
* :mod:`.effects`: illumination, bonnet, sensor effects and camera roll;
* :mod:`.render`: :func:`render_scene`, one image from ``(seed, domain, index, size)``;
* :mod:`.generate`: writing whole domains in the real datasets' layouts, resuming interrupted runs;
* :mod:`.cli`: the command line (``datasets/generate_synthetic.py``).

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
    rare-class-sampling statistics ``rcs_class_stats.json`` (the format of :mod:`mfuser.data.rcs_stats`).
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

Public API (below): :func:`render_scene`, :func:`generate_domain`, :func:`generate_all`,
:func:`domain_files`, :data:`DOMAINS`, :data:`STYLES`. Output is deterministic per seed: one image depends
only on ``(seed, domain, index, size)``, never on ``workers``; same seed -> byte-identical files. The
majority-class baseline and the label histograms it uses are in :mod:`mfuser.evaluation.baselines`.
"""

from ..rcs_stats import RCS_STATS_FILENAME
from .generate import domain_files, generate_all, generate_domain
from .render import GENERATOR_VERSION, render_scene
from .styles import DOMAINS, STYLES, TARGET_DOMAINS, DomainStyle

__all__ = [
    "DOMAINS",
    "TARGET_DOMAINS",
    "GENERATOR_VERSION",
    "DomainStyle",
    "STYLES",
    "render_scene",
    "generate_domain",
    "generate_all",
    "domain_files",
    "RCS_STATS_FILENAME",
]
