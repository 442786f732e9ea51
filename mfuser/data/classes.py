"""The 19 Cityscapes evaluation classes, their colours and every id -> trainId mapping.

This module is the one source of truth for class names, colours and label conversions in the
project (docs/reference.md, "Label conversions"). Everything else (dataset metadata, preparation scripts, label readers,
the model's vocabulary via metadata) reads from here.

TrainIds are 0..18 in :data:`CITYSCAPES_CLASSES` order; :data:`IGNORE_LABEL` (255) marks pixels
that are neither trained on nor evaluated.
"""

from typing import Dict, List, Tuple

import numpy as np

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "NUM_CLASSES",
    "IGNORE_LABEL",
    "THING_CLASSES",
    "CITYSCAPES_ID_TO_TRAINID",
    "SYNTHIA_ID_TO_TRAINID",
    "MAPILLARY_V12_ID_TO_TRAINID",
    "MAPILLARY_V12_CLASSES",
    "build_lut",
    "apply_mapping",
]

#: The 19 evaluation classes, in trainId order (docs/reference.md, "The 19 classes").
CITYSCAPES_CLASSES: List[str] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]

#: RGB colour of each class (cityscapesScripts ``labels.py``), same order as the classes.
CITYSCAPES_COLORS: List[Tuple[int, int, int]] = [
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]

NUM_CLASSES: int = len(CITYSCAPES_CLASSES)

#: Label value of pixels that are ignored in training and evaluation.
IGNORE_LABEL: int = 255

#: The 8 Cityscapes "thing" classes (countable objects; the other 11 are "stuff").
THING_CLASSES: List[str] = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]

#: Official Cityscapes label id -> trainId table (cityscapesScripts ``labels.py``). GTA5 labels use the
#: same ids. Every id not listed maps to :data:`IGNORE_LABEL`.
CITYSCAPES_ID_TO_TRAINID: Dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

#: SYNTHIA-RAND-CITYSCAPES class id (the R channel of the 16-bit ``GT/LABELS`` PNGs) -> trainId
#: (docs/reference.md, "Label conversions"; DAFormer's converter). terrain (9), truck (14) and train (16) do
#: not occur in SYNTHIA.
SYNTHIA_ID_TO_TRAINID: Dict[int, int] = {
    3: 0,
    4: 1,
    2: 2,
    21: 3,
    5: 4,
    7: 5,
    15: 6,
    9: 7,
    6: 8,
    16: 9,
    1: 10,
    10: 11,
    17: 12,
    8: 13,
    18: 14,
    19: 15,
    20: 16,
    12: 17,
    11: 18,
}

#: Mapillary Vistas v1.2 class names (66 classes; palette index = list index).
MAPILLARY_V12_CLASSES: List[str] = [
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane",
    "Crosswalk - Plain", "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane",
    "Sidewalk", "Bridge", "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider",
    "Lane Marking - Crosswalk", "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain",
    "Vegetation", "Water", "Banner", "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera",
    "Fire Hydrant", "Junction Box", "Mailbox", "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole",
    "Traffic Sign Frame", "Utility Pole", "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)",
    "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan", "Motorcycle", "On Rails", "Other Vehicle",
    "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle", "Unlabeled",
]  # fmt: skip

#: Mapillary Vistas v1.2 id -> Cityscapes trainId: the domain-generalization standard mapping of the
#: DAFormer/HRDA/MIC family (docs/reference.md, "Label conversions"). Everything not listed maps to
#: :data:`IGNORE_LABEL`.
MAPILLARY_V12_ID_TO_TRAINID: Dict[int, int] = {
    13: 0,  # Road
    24: 0,  # Lane Marking - General
    41: 0,  # Manhole
    2: 1,  # Curb
    15: 1,  # Sidewalk
    17: 2,  # Building
    6: 3,  # Wall
    3: 4,  # Fence
    45: 5,  # Pole
    47: 5,  # Utility Pole
    48: 6,  # Traffic Light
    50: 7,  # Traffic Sign (Front)
    30: 8,  # Vegetation
    29: 9,  # Terrain
    27: 10,  # Sky
    19: 11,  # Person
    20: 12,  # Bicyclist
    21: 12,  # Motorcyclist
    22: 12,  # Other Rider
    55: 13,  # Car
    61: 14,  # Truck
    54: 15,  # Bus
    58: 16,  # On Rails
    57: 17,  # Motorcycle
    52: 18,  # Bicycle
}


def _check_mapping(mapping: Dict[int, int], num_classes: int = NUM_CLASSES) -> Dict[int, int]:
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"mapping: expected a non-empty dict {{source_id: train_id}}, got {mapping!r}")
    out = {}
    for k, v in mapping.items():
        try:
            ki, vi = int(k), int(v)
        except (TypeError, ValueError):
            raise ValueError(f"mapping: keys and values must be integers, got {k!r}: {v!r}") from None
        if ki < 0:
            raise ValueError(f"mapping: source ids must be >= 0, got {ki}")
        if not (0 <= vi < num_classes or vi == IGNORE_LABEL):
            raise ValueError(f"mapping: target of {ki} is {vi}; expected 0..{num_classes - 1} or {IGNORE_LABEL}")
        out[ki] = vi
    return out


def build_lut(mapping: Dict[int, int], size: int = 256, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A uint8 lookup table of ``size`` entries: ``lut[source_id] = train_id``, ignore elsewhere."""
    mapping = _check_mapping(mapping, num_classes)
    too_big = [k for k in mapping if k >= size]
    if too_big:
        raise ValueError(f"mapping: source ids {sorted(too_big)} do not fit a lookup table of size {size}")
    lut = np.full(size, IGNORE_LABEL, dtype=np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut


def apply_mapping(raw: np.ndarray, mapping: Dict[int, int], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Map an integer label array (any non-negative integer dtype, e.g. 8 or 16 bit) through ``mapping``.

    Args:
        raw: (H, W) integer array of source ids.
        mapping: ``{source_id: train_id}``; ids not in it become :data:`IGNORE_LABEL`.
    Returns:
        (H, W) uint8 array of trainIds / 255.
    """
    if raw.dtype.kind not in "ui" or (raw.size and raw.min() < 0):
        raise ValueError(f"apply_mapping: expected a non-negative integer array, got dtype {raw.dtype}")
    mapping = _check_mapping(mapping, num_classes)
    size = max(256, int(raw.max()) + 1 if raw.size else 0, max(mapping) + 1)
    lut = build_lut(mapping, size=size, num_classes=num_classes)
    return lut[raw]
