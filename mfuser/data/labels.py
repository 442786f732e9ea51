"""Reading, validating and writing semantic label maps.

``read_label`` is used by the training mapper, the evaluator
(:class:`mfuser.evaluation.multi_domain.CheckedSemSegEvaluator`, because detectron2's default ``SemSegEvaluator``
loader checks nothing) and the preparation scripts. Every label it returns holds only trainIds
``0..num_classes-1`` and :data:`IGNORE_LABEL`. Given its image (``image_file``, ``image_size``), it also
checks that the label has exactly the image's height and width. Anything else raises :class:`LabelError`
naming the label file (and its image).

Label formats (the dataset metadata key ``label_format`` holds one of them); the values a file may hold in
each format form one :class:`ValidValues` set (:func:`valid_values`), the single source of truth used by every
reader:

* ``"trainid"``: a single-channel PNG whose values are trainIds (grayscale ``L``, 16-bit ``I;16``,
  or a palette ``P`` PNG whose *indices* are the trainIds, e.g. BDD100K ``colormaps``).
  Valid: ``0..num_classes-1`` and 255.
* ``"cityscapes_id"``: Cityscapes/GTA5 label ids (grayscale ``*_labelIds.png``, or a palette PNG whose indices
  are the ids, as the GTA5 labels are), mapped with the official table. Valid: the ids of the official table,
  :data:`CITYSCAPES_LABEL_ID_NAMES` (0..33); any other id is an error, not ignore.
* ``"mapillary_v12"``: Mapillary Vistas v1.2 labels (palette PNGs whose indices are the 66 class ids of
  :data:`~mfuser.data.classes.MAPILLARY_V12_CLASSES`), mapped with
  :data:`~mfuser.data.classes.MAPILLARY_V12_ID_TO_TRAINID`. Valid: 0..65.
* ``"palette"``: colour-coded labels. A palette (``P``) PNG yields its palette indices as trainIds (valid as for
  ``"trainid"``); an RGB(A) PNG is mapped back through the 19 class colours (black ``(0, 0, 0)`` = ignore);
  any other colour is refused.
* a ``dict`` ``{source_id: train_id}``: source ids (from a single-channel or palette PNG, 8 or 16 bit)
  mapped through the dict; ids not in it become ignore (the dict is the user's whole specification).
"""

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from mfuser.utils.io import atomic_write

from .classes import (
    CITYSCAPES_COLORS,
    CITYSCAPES_ID_TO_TRAINID,
    IGNORE_LABEL,
    MAPILLARY_V12_CLASSES,
    MAPILLARY_V12_ID_TO_TRAINID,
    NUM_CLASSES,
    apply_mapping,
)

__all__ = [
    "LABEL_FORMATS",
    "LabelError",
    "ValidValues",
    "CITYSCAPES_LABEL_ID_NAMES",
    "CITYSCAPES_ID_VALUES",
    "MAPILLARY_V12_ID_VALUES",
    "trainid_values",
    "valid_values",
    "read_label",
    "read_label_ids",
    "check_label_size",
    "check_label_values",
    "check_label_format",
    "write_label",
    "make_sem_seg_loading_fn",
]

LABEL_FORMATS = ("trainid", "cityscapes_id", "mapillary_v12", "palette")

LabelFormat = str | Dict[int, int]


class LabelError(ValueError):
    """A label file that does not fit its image or its label format: another height or width than its image,
    values outside the format's valid set, unknown colours, or an undecodable file. The message names the
    label file, its image when known, and what was expected."""


#: The official Cityscapes label-id table (cityscapesScripts ``labels.py``): ``CITYSCAPES_LABEL_ID_NAMES[id]``
#: is the name of label id ``id``. 'license plate' (id -1) is never written into ``*_labelIds.png``. The
#: trainId mapping of these ids is :data:`~mfuser.data.classes.CITYSCAPES_ID_TO_TRAINID`.
CITYSCAPES_LABEL_ID_NAMES: Tuple[str, ...] = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)  # fmt: skip


@dataclass(frozen=True)
class ValidValues:
    """A set of valid label values: ``0..count-1`` plus the values in ``extra`` (e.g. the ignore value 255).

    ``what`` describes the set in error messages.
    """

    count: int
    extra: Tuple[int, ...] = ()
    what: str = ""

    def __contains__(self, v) -> bool:
        return 0 <= int(v) < self.count or int(v) in self.extra

    def invalid(self, arr: np.ndarray) -> List[int]:
        """The sorted distinct values of the integer array ``arr`` outside the set (``[]`` when all are valid).

        Cheap: one ``max`` over ``arr`` when every value is below ``count``; otherwise one comparison per extra
        value, and ``np.unique`` over the invalid pixels only (not the whole label).
        """
        if arr.size == 0:
            return []
        signed = arr.dtype.kind == "i"
        if int(arr.max()) < self.count and not (signed and int(arr.min()) < 0):
            return []
        bad = arr >= self.count
        if signed:
            bad |= arr < 0
        for v in self.extra:
            bad &= arr != v
        if not bad.any():
            return []
        return [int(v) for v in np.unique(arr[bad])]


def trainid_values(num_classes: int = NUM_CLASSES) -> ValidValues:
    """The valid values of a trainId label: ``0..num_classes-1`` and :data:`IGNORE_LABEL`."""
    return ValidValues(num_classes, (IGNORE_LABEL,), f"trainIds 0..{num_classes - 1} and ignore {IGNORE_LABEL}")


#: Valid values of a ``"cityscapes_id"`` label: the ids of the official table (0..33).
CITYSCAPES_ID_VALUES = ValidValues(
    len(CITYSCAPES_LABEL_ID_NAMES), (), f"Cityscapes label ids 0..{len(CITYSCAPES_LABEL_ID_NAMES) - 1} (the official "
    "table, cityscapesScripts labels.py)"
)
#: Valid values of a ``"mapillary_v12"`` label: the 66 Vistas v1.2 class ids.
MAPILLARY_V12_ID_VALUES = ValidValues(
    len(MAPILLARY_V12_CLASSES), (), f"Mapillary Vistas v1.2 class ids 0..{len(MAPILLARY_V12_CLASSES) - 1}"
)

# format -> (valid raw ids, id -> trainId mapping) for the id-coded formats
_ID_FORMATS = {
    "cityscapes_id": (CITYSCAPES_ID_VALUES, CITYSCAPES_ID_TO_TRAINID),
    "mapillary_v12": (MAPILLARY_V12_ID_VALUES, MAPILLARY_V12_ID_TO_TRAINID),
}


def valid_values(label_format: LabelFormat, num_classes: int = NUM_CLASSES) -> ValidValues | None:
    """The values a label file of ``label_format`` may hold (before any id -> trainId mapping); ``None`` for a
    mapping dict (any non-negative id: unmapped ids become ignore) and for RGB ``"palette"`` files, whose colours
    are checked against the class colours instead."""
    label_format = check_label_format(label_format)
    if isinstance(label_format, dict):
        return None
    if label_format in _ID_FORMATS:
        return _ID_FORMATS[label_format][0]
    return trainid_values(num_classes)


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


def _named(path: str, image_file: str | None, first: str = "Label") -> str:
    """``Label file X`` or ``Label file X (image Y)``: how every error names a label."""
    return f"{first} file {path}" + (f" (image {image_file})" if image_file else "")


def check_label_size(label_size: Sequence[int], image_size: Sequence[int], *, label_file: str,
                     image_file: str | None = None, hint: str = "") -> None:
    """Raise :class:`LabelError` unless a label of ``label_size`` = (H, W) has exactly its image's ``image_size``
    = (H, W): the same height and the same width (the same pixel count is not enough).

    The message names both files, both sizes (width x height) and, for swapped height and width, says so.
    """
    lh, lw = (int(v) for v in label_size[:2])
    ih, iw = (int(v) for v in image_size[:2])
    if (lh, lw) == (ih, iw):
        return
    msg = (
        f"Label {label_file} is {lw}x{lh} but image {image_file or '(unnamed)'} is {iw}x{ih} (width x height); "
        f"expected a label of exactly {iw}x{ih}"
    )
    if (lh, lw) == (iw, ih):
        msg += " (the label's height and width are swapped)"
    elif lh * lw == ih * iw:
        msg += " (same pixel count, different shape)"
    raise LabelError(msg + (". " + hint if hint else ""))


def _open(path: str, image_file: str | None, image_size: Sequence[int] | None) -> Image.Image:
    """Open ``path`` and check its size against ``image_size`` from the header (the pixels are decoded by
    :func:`_load`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Label file not found: {path}" + (f" (image {image_file})" if image_file else ""))
    try:
        img = Image.open(path)
    except Exception as e:  # PIL raises many types for truncated / non-image files
        raise LabelError(f"Cannot decode {_named(path, image_file, 'label')}: {type(e).__name__}: {e}") from e
    if image_size is not None:
        try:
            check_label_size((img.height, img.width), image_size, label_file=path, image_file=image_file)
        except LabelError:
            img.close()
            raise
    return img


def _load(img: Image.Image, path: str, image_file: str | None) -> Image.Image:
    try:
        img.load()
    except Exception as e:
        raise LabelError(f"Cannot decode {_named(path, image_file, 'label')}: {type(e).__name__}: {e}") from e
    return img


def _single_channel(img: Image.Image, path: str, label_format, image_file=None) -> np.ndarray:
    if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    hint = " Colour-coded labels need label_format='palette'." if label_format == "trainid" else ""
    raise LabelError(
        f"{_named(path, image_file)} is a {img.mode} image; label_format={label_format!r} expects a single-channel "
        f"(grayscale or palette) PNG.{hint}"
    )


_COLOR_CODES = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(CITYSCAPES_COLORS)}
_COLOR_CODES[0] = IGNORE_LABEL  # black = void / ignore


def _rgb_to_trainid(rgb: np.ndarray, path: str, image_file=None) -> np.ndarray:
    rgb = rgb[..., :3].astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(c) for c in uniq if int(c) not in _COLOR_CODES]
    if unknown:
        shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown[:8])
        raise LabelError(
            f"{_named(path, image_file)} contains {len(unknown)} colour(s) that are not one of the 19 class colours "
            f"(or black = ignore): {shown}{' ...' if len(unknown) > 8 else ''}"
        )
    lut = np.array([_COLOR_CODES[int(c)] for c in uniq], dtype=np.uint8)
    return lut[inverse.reshape(codes.shape)]


def _raise_invalid(bad: List[int], values: ValidValues, path: str, image_file, label_format, hint: str) -> None:
    shown = f"{bad[:20]}{' ...' if len(bad) > 20 else ''}"
    raise LabelError(
        f"{_named(path, image_file)} holds values {shown} outside the valid values of label_format={label_format!r}: "
        f"expected {values.what}. {hint}".rstrip()
    )


# what to check when a file holds values outside its format's set
_HINTS = {
    "trainid": "Wrong label_format, or labels not converted to trainIds? See datasets/README.md.",
    "cityscapes_id": "Labels already converted to trainIds need label_format='trainid'.",
    "mapillary_v12": "Expected the Vistas v1.2 palette-index labels (v2.0 has 124 classes).",
}


def check_label_values(label: np.ndarray, path: str, num_classes: int = NUM_CLASSES, *,
                       image_file: str | None = None) -> np.ndarray:
    """Raise :class:`LabelError` if the trainId label ``label`` holds values outside :func:`trainid_values`;
    return it as uint8."""
    bad = trainid_values(num_classes).invalid(label)
    if bad:
        _raise_invalid(bad, trainid_values(num_classes), path, image_file, "trainid", _HINTS["trainid"])
    return label.astype(np.uint8, copy=False)


def read_label_ids(path: str, values: ValidValues, *, label_format: LabelFormat = "ids", image_file: str | None = None,
                   image_size: Sequence[int] | None = None) -> np.ndarray:
    """Read a single-channel (grayscale, 16-bit or palette-index) label file of raw ids, checked against ``values``.

    Args:
        path: a PNG label file.
        values: the valid ids (e.g. :data:`CITYSCAPES_ID_VALUES`).
        label_format: named in error messages.
        image_file, image_size: the label's image and its (H, W); when given, the label must have exactly that
            height and width.
    Returns:
        (H, W) integer array of the file's ids (its own dtype: uint8, uint16 or int32).
    """
    img = _open(path, image_file, image_size)
    raw = _single_channel(_load(img, path, image_file), path, label_format, image_file)
    bad = values.invalid(raw)
    if bad:
        _raise_invalid(bad, values, path, image_file, label_format, _HINTS.get(label_format, ""))
    return raw


def read_label(path: str, label_format: LabelFormat = "trainid", num_classes: int = NUM_CLASSES, *,
               image_file: str | None = None, image_size: Sequence[int] | None = None) -> np.ndarray:
    """Read a label file as trainIds, checked against its format and (when given) its image.

    Args:
        path: a PNG label file.
        label_format: see the module docstring.
        num_classes: K; valid trainIds are ``0..K-1`` and 255.
        image_file: the label's image, named in every error.
        image_size: (H, W) of the image; the label must have exactly this height and width.
    Returns:
        (H, W) uint8 array of trainIds / 255.
    Raises:
        FileNotFoundError: missing file. LabelError (a ValueError): undecodable file, another size than the image,
        wrong channel layout, unknown colours, values outside the format's valid set (each message names the
        label file and, when given, its image).
    """
    label_format = check_label_format(label_format)
    if isinstance(label_format, str) and (label_format in _ID_FORMATS or label_format == "trainid"):
        values = valid_values(label_format, num_classes)
        raw = read_label_ids(path, values, label_format=label_format, image_file=image_file, image_size=image_size)
        if label_format == "trainid":
            return raw.astype(np.uint8, copy=False)
        return apply_mapping(raw, _ID_FORMATS[label_format][1], num_classes=num_classes)
    img = _open(path, image_file, image_size)
    _load(img, path, image_file)
    if isinstance(label_format, dict):
        raw = _single_channel(img, path, label_format, image_file)
        if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
            raise LabelError(f"{_named(path, image_file)} holds negative ids")
        return apply_mapping(raw, label_format, num_classes=max(num_classes, 1))
    # palette
    if img.mode == "P":
        return check_label_values(np.asarray(img), path, num_classes, image_file=image_file)
    if img.mode in ("RGB", "RGBA"):
        return _rgb_to_trainid(np.asarray(img), path, image_file)
    raise LabelError(
        f"{_named(path, image_file)} is a {img.mode} image; label_format='palette' expects a palette (P) or RGB "
        "PNG. Grayscale trainId labels need label_format='trainid'."
    )


def make_sem_seg_loading_fn(label_format: LabelFormat = "trainid", num_classes: int = NUM_CLASSES) -> Callable:
    """A ``sem_seg_loading_fn`` for detectron2's ``SemSegEvaluator``: ``fn(path, dtype=None) -> ndarray``.

    It checks the label's values but cannot check its size (detectron2 passes the path only): use
    :class:`mfuser.evaluation.multi_domain.CheckedSemSegEvaluator`, which checks both.
    """
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
