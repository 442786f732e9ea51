"""Helpers shared by the dataset loaders: folder checks, image/label pairing and record building.

All loaders produce detectron2 semantic-segmentation dataset dicts::

    {"file_name": str, "sem_seg_file_name": str, "height": int, "width": int}

``height`` / ``width`` are the image size (read from the file header). Pairing is strict: an image
without a label or a label without an image is listed in the error, unless ``allow_unpaired=True``
(then the unpaired files are logged with their count and left out).
"""

import logging
import os
from typing import Dict, List, Tuple

from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["DatasetNotFoundError", "require_dir", "list_files", "pair_files", "image_size", "build_records"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root or split folder is missing. The message names the expected path and what to run."""


def require_dir(path: str, what: str, hint: str = "") -> str:
    """Return ``path`` if it is a directory, else raise :class:`DatasetNotFoundError` naming it."""
    if not os.path.isdir(path):
        msg = f"{what}: expected the folder {path}, which does not exist."
        if hint:
            msg += " " + hint
        raise DatasetNotFoundError(msg)
    return path


def list_files(
    root: str, suffix: str, *, recursive: bool = True, exclude_suffixes: Tuple[str, ...] = ()
) -> Dict[str, str]:
    """Map ``relative path without suffix`` -> full path for files under ``root`` ending with ``suffix``."""
    out = {}
    if recursive:
        walker = os.walk(root, followlinks=True)
    else:
        walker = [(root, [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith(suffix) or fn.startswith(".tmp-") or any(fn.endswith(s) for s in exclude_suffixes):
                continue
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, root)
            out[rel[: len(rel) - len(suffix)]] = full
    return out


def _fmt(keys: List[str], n: int = 10) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def pair_files(
    image_root: str,
    label_root: str,
    image_suffix: str,
    label_suffix: str,
    *,
    recursive: bool = True,
    allow_unpaired: bool = False,
    label_exclude_suffixes: Tuple[str, ...] = (),
    image_exclude_suffixes: Tuple[str, ...] = (),
    hint: str = "",
    unpaired_hint: str = "Pass allow_unpaired=True to leave them out.",
) -> List[Tuple[str, str]]:
    """Pair images and labels by relative path with the suffixes removed.

    Returns a sorted list of ``(image_path, label_path)``. Raises ``ValueError`` listing and counting the
    unpaired files (followed by ``unpaired_hint`` and ``hint``) unless ``allow_unpaired``; raises when nothing pairs
    at all.
    """
    if not image_suffix or not label_suffix:
        raise ValueError(f"image_suffix and label_suffix must be non-empty, got {image_suffix!r}, {label_suffix!r}")
    images = list_files(image_root, image_suffix, recursive=recursive, exclude_suffixes=image_exclude_suffixes)
    labels = list_files(label_root, label_suffix, recursive=recursive, exclude_suffixes=label_exclude_suffixes)
    no_label = sorted(set(images) - set(labels))
    no_image = sorted(set(labels) - set(images))
    if no_label or no_image:
        msg = (
            f"Unpaired files between {image_root} (*{image_suffix}) and {label_root} (*{label_suffix}): "
            f"{len(no_label)} image(s) without a label [{_fmt(no_label)}]; "
            f"{len(no_image)} label(s) without an image [{_fmt(no_image)}]."
        )
        if not allow_unpaired:
            raise ValueError(" ".join(filter(None, [msg, unpaired_hint, hint])))
        logger.warning(msg + " They are left out (allow_unpaired=True).")
    keys = sorted(set(images) & set(labels))
    if not keys:
        raise ValueError(
            f"No image/label pairs found: {len(images)} *{image_suffix} file(s) under {image_root}, "
            f"{len(labels)} *{label_suffix} file(s) under {label_root}. {hint}"
        )
    return [(images[k], labels[k]) for k in keys]


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) from the image header; ``ValueError`` naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as e:
        raise ValueError(f"Cannot read image {path}: {type(e).__name__}: {e}") from e
    return h, w


def build_records(pairs: List[Tuple[str, str]], extra: dict | None = None) -> List[dict]:
    """Dataset dicts for ``(image, label)`` pairs, with the image size from the header."""
    records = []
    for img, lab in pairs:
        h, w = image_size(img)
        rec = {"file_name": img, "sem_seg_file_name": lab, "height": h, "width": w}
        if extra:
            rec.update(extra)
        records.append(rec)
    return records
