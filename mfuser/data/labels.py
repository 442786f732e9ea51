"""Reading, validating and writing semantic label maps.

``read_label`` is used by the training mapper, the evaluator (through :func:`make_sem_seg_loading_fn`,
because detectron2's default ``SemSegEvaluator`` loader does not validate values) and the preparation
scripts. Every label it returns holds only trainIds ``0..num_classes-1`` and :data:`IGNORE_LABEL`;
anything else raises an error naming the file.

Label formats (the dataset metadata key ``label_format`` holds one of them):

* ``"trainid"``: a single-channel PNG whose values are trainIds (grayscale ``L``, 16-bit ``I;16``,
  or a palette ``P`` PNG whose *indices* are the trainIds, e.g. BDD100K ``colormaps``).
* ``"cityscapes_id"``: Cityscapes/GTA5 label ids, mapped with the official table.
* ``"palette"``: colour-coded labels. A palette (``P``) PNG yields its palette indices as trainIds;
  an RGB(A) PNG is mapped back through the 19 class colours (black ``(0, 0, 0)`` = ignore); any other
  colour is refused with the file named.
* a ``dict`` ``{source_id: train_id}``: source ids (from a single-channel or palette PNG, 8 or 16 bit)
  mapped through the dict; ids not in it become ignore.
"""

import os
from typing import Callable, Dict

import numpy as np
from PIL import Image

from mfuser.utils.io import atomic_write

from .classes import CITYSCAPES_COLORS, CITYSCAPES_ID_TO_TRAINID, IGNORE_LABEL, NUM_CLASSES, apply_mapping

__all__ = [
    "LABEL_FORMATS",
    "read_label",
    "check_label_values",
    "check_label_format",
    "write_label",
    "make_sem_seg_loading_fn",
]

LABEL_FORMATS = ("trainid", "cityscapes_id", "palette")

LabelFormat = str | Dict[int, int]


def check_label_format(label_format: LabelFormat) -> LabelFormat:
    """Validate ``label_format`` (one of :data:`LABEL_FORMATS` or a mapping dict) and return it."""
    if isinstance(label_format, dict):
        if not label_format:
            raise ValueError("label_format: a mapping dict must not be empty")
        return {int(k): int(v) for k, v in label_format.items()}
    if label_format not in LABEL_FORMATS:
        raise ValueError(
            f"label_format: expected one of {LABEL_FORMATS} or a dict {{id: trainId}}, got {label_format!r}"
        )
    return label_format


def _open(path: str) -> Image.Image:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Label file not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises many types for truncated / non-image files
        raise ValueError(f"Cannot decode label file {path}: {type(e).__name__}: {e}") from e
    return img


def _single_channel(img: Image.Image, path: str, label_format) -> np.ndarray:
    if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    raise ValueError(
        f"Label file {path} is a {img.mode} image; label_format={label_format!r} expects a single-channel "
        "(grayscale or palette) PNG. Colour-coded labels need label_format='palette'."
    )


_COLOR_CODES = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(CITYSCAPES_COLORS)}
_COLOR_CODES[0] = IGNORE_LABEL  # black = void / ignore


def _rgb_to_trainid(rgb: np.ndarray, path: str) -> np.ndarray:
    rgb = rgb[..., :3].astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(c) for c in uniq if int(c) not in _COLOR_CODES]
    if unknown:
        shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown[:8])
        raise ValueError(
            f"Label file {path} contains {len(unknown)} colour(s) that are not one of the 19 class colours "
            f"(or black = ignore): {shown}{' ...' if len(unknown) > 8 else ''}"
        )
    lut = np.array([_COLOR_CODES[int(c)] for c in uniq], dtype=np.uint8)
    return lut[inverse.reshape(codes.shape)]


def check_label_values(label: np.ndarray, path: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Raise if ``label`` holds values outside ``0..num_classes-1`` other than 255; return it as uint8."""
    uniq = np.unique(label)
    bad = [int(v) for v in uniq if not (0 <= v < num_classes or v == IGNORE_LABEL)]
    if bad:
        raise ValueError(
            f"Label file {path} holds values {bad[:20]}{' ...' if len(bad) > 20 else ''} outside the class range "
            f"0..{num_classes - 1} (and ignore {IGNORE_LABEL}). Wrong label_format, or labels not converted to "
            "trainIds? See datasets/README.md."
        )
    return label.astype(np.uint8, copy=False)


def read_label(path: str, label_format: LabelFormat = "trainid", num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Read a label file as trainIds.

    Args:
        path: a PNG label file.
        label_format: see the module docstring.
        num_classes: K; valid values are ``0..K-1`` and 255.
    Returns:
        (H, W) uint8 array of trainIds / 255.
    Raises:
        FileNotFoundError: missing file. ValueError: undecodable file, wrong channel layout, unknown colours,
        values outside the class range (each message names the file).
    """
    label_format = check_label_format(label_format)
    img = _open(path)
    if isinstance(label_format, dict):
        raw = _single_channel(img, path, label_format)
        if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
            raise ValueError(f"Label file {path} holds negative ids")
        label = apply_mapping(raw, label_format, num_classes=max(num_classes, 1))
    elif label_format == "trainid":
        label = _single_channel(img, path, label_format)
    elif label_format == "cityscapes_id":
        raw = _single_channel(img, path, label_format)
        if img.mode == "P":
            raise ValueError(f"Label file {path} is a palette PNG; label_format='cityscapes_id' expects *_labelIds.png")
        label = apply_mapping(raw, CITYSCAPES_ID_TO_TRAINID, num_classes=num_classes)
    else:  # palette
        if img.mode == "P":
            label = np.asarray(img)
        elif img.mode in ("RGB", "RGBA"):
            label = _rgb_to_trainid(np.asarray(img), path)
        else:
            raise ValueError(
                f"Label file {path} is a {img.mode} image; label_format='palette' expects a palette (P) or RGB PNG. "
                "Grayscale trainId labels need label_format='trainid'."
            )
    return check_label_values(np.asarray(label), path, num_classes)


def make_sem_seg_loading_fn(label_format: LabelFormat = "trainid", num_classes: int = NUM_CLASSES) -> Callable:
    """A ``sem_seg_loading_fn`` for detectron2's ``SemSegEvaluator``: ``fn(path, dtype=None) -> ndarray``."""
    label_format = check_label_format(label_format)

    def load(path: str, dtype: np.dtype | str | type | None = None) -> np.ndarray:
        label = read_label(path, label_format, num_classes)
        return label if dtype is None else label.astype(dtype)

    return load


def write_label(label: np.ndarray, dst: str) -> None:
    """Write an (H, W) uint8 trainId label as a grayscale PNG, atomically."""
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"write_label: expected an (H, W) uint8 array, got {label.shape} {label.dtype}")
    atomic_write(dst, lambda tmp: Image.fromarray(label).save(tmp, format="PNG"), suffix=".png")
