"""Register any folder of images + labels as an evaluation (or training) domain in one call."""

import os
from typing import List, Sequence

from ..classes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
from ..labels import check_label_format
from .common import DatasetNotFoundError, build_records, pair_files, require_dir

__all__ = ["register_target_domain", "load_target_domain"]


def load_target_domain(
    image_root: str, label_root: str, *, image_suffix: str, label_suffix: str, allow_unpaired: bool = False
) -> List[dict]:
    """Dataset dicts for every image under ``image_root`` (recursively) paired with the label under
    ``label_root`` at the same relative path once the suffixes are removed."""
    image_root = require_dir(image_root, "image_root")
    label_root = require_dir(label_root, "label_root")
    return build_records(pair_files(image_root, label_root, image_suffix, label_suffix, allow_unpaired=allow_unpaired))


def _default_colors(n: int) -> List[tuple]:
    if n <= len(CITYSCAPES_COLORS):
        return list(CITYSCAPES_COLORS[:n])
    # deterministic distinct-ish colours for larger vocabularies
    return [((37 * i) % 256, (97 * i + 80) % 256, (173 * i + 40) % 256) for i in range(n)]


def register_target_domain(
    name: str,
    image_root: str,
    label_root: str,
    *,
    image_suffix: str,
    label_suffix: str,
    label_format="trainid",
    classes: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    allow_unpaired: bool = False,
    overwrite: bool = False,
    origin: str | None = None,
) -> str:
    """Register a folder of images + labels as a semantic-segmentation dataset and return its name.

    Files are paired recursively by relative path: ``<image_root>/a/b/x<image_suffix>`` goes with
    ``<label_root>/a/b/x<label_suffix>``. The folders are read when the dataset is first loaded
    (``DatasetCatalog.get(name)``), so registering never touches the disk; loading raises with the
    expected path when a folder is missing, and lists unpaired files unless ``allow_unpaired``.

    Args:
        name: the dataset name.
        image_root, label_root: folders of images and labels.
        image_suffix, label_suffix: file-name endings that are removed to pair files
            (e.g. ``"_rgb_anon.png"`` and ``"_gt_labelTrainIds.png"`` for ACDC).
        label_format: ``"trainid"``, ``"cityscapes_id"``, ``"mapillary_v12"``, ``"palette"`` or a dict ``{id: trainId}``
            (see :mod:`mfuser.data.labels`); stored in the metadata for the mapper and evaluator.
        classes: class names (default: the 19 Cityscapes classes); labels are checked against their count.
        colors: one RGB colour per class (default: the Cityscapes colours, generated beyond 19).
        allow_unpaired: leave out unpaired files instead of raising.
        overwrite: replace an existing registration of ``name`` made with different arguments.
        origin: where this registration comes from (e.g. its catalogue file, see :mod:`mfuser.data.catalogue`);
            stored in the metadata and put in front of every error raised while loading.
    Returns:
        ``name``. Registering again with identical arguments is a no-op.
    """
    from .register import register_semseg  # local import: register imports this module

    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    label_format = check_label_format(label_format)
    classes = list(CITYSCAPES_CLASSES if classes is None else classes)
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(f"classes: expected a non-empty list of class names, got {classes!r}")
    if len(classes) > 255:
        raise ValueError(f"classes: at most 255 classes fit uint8 labels with ignore 255, got {len(classes)}")
    colors = [tuple(int(v) for v in c) for c in (colors if colors is not None else _default_colors(len(classes)))]
    if len(colors) != len(classes):
        raise ValueError(f"colors: expected {len(classes)} colours (one per class), got {len(colors)}")
    for arg, value in (("image_suffix", image_suffix), ("label_suffix", label_suffix)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{arg}: expected a non-empty string such as '.png', got {value!r}")
    image_root, label_root = (
        os.path.abspath(os.path.expanduser(image_root)),
        os.path.abspath(os.path.expanduser(label_root)),
    )

    def load(ir=image_root, lr=label_root, isx=image_suffix, lsx=label_suffix, au=allow_unpaired):
        try:
            return load_target_domain(ir, lr, image_suffix=isx, label_suffix=lsx, allow_unpaired=au)
        except (DatasetNotFoundError, ValueError) as e:
            if origin is None:
                raise
            kind = DatasetNotFoundError if isinstance(e, DatasetNotFoundError) else ValueError
            raise kind(f"dataset {name!r} ({origin}): {e}") from e

    spec = ("target_domain", image_root, label_root, image_suffix, label_suffix, repr(label_format), tuple(classes),
            tuple(colors), allow_unpaired, origin)  # fmt: skip
    extra = {"origin": origin} if origin is not None else {}
    register_semseg(
        name,
        load,
        spec=spec,
        replace=overwrite,
        label_format=label_format,
        image_root=image_root,
        sem_seg_root=label_root,
        stuff_classes=classes,
        stuff_colors=colors,
        **extra,
    )
    return name
