"""The domain catalogue: folders of images + labels registered as target domains by name, without code.

One small JSON file per domain, ``$DETECTRON2_DATASETS/mfuser_domains/<name>.json`` (the folder name is
:data:`CATALOGUE_DIRNAME`; ``$DETECTRON2_DATASETS`` defaults to ``datasets``). ``tools/register_domain.py`` checks a
folder and writes the entry; it may also be written by hand::

    {
      "mfuser_domain": 1,
      "images": "/data/dashcam/images",
      "labels": "/data/dashcam/labels",
      "image_suffix": ".jpg",
      "label_suffix": "_trainIds.png",
      "label_format": "trainid",
      "num_images": 120
    }

* the file name (without ``.json``) is the dataset name;
* ``images`` / ``labels``: folders, searched recursively; relative ones are relative to ``$DETECTRON2_DATASETS``.
  ``<images>/a/b/x<image_suffix>`` pairs with ``<labels>/a/b/x<label_suffix>``;
* ``label_format``: one of :data:`mfuser.data.labels.LABEL_FORMATS` (``trainid``: PNG values are the 19 trainIds,
  255 = ignore; ``cityscapes_id``: Cityscapes / GTA5 ``*_labelIds.png``; ``mapillary_v12``: Mapillary Vistas v1.2
  palette-index labels; ``palette``: the Cityscapes class colours); the classes are the 19 Cityscapes classes;
* ``num_images`` (optional, informational): the pairs found when the entry was written.

``import mfuser.data`` calls :func:`register_catalogue`, which registers every entry through
:func:`mfuser.data.register_target_domain`, so ``'dataloader.targets=[NAME]'`` works with every config, for
``--eval-only``, the evaluation during training and the demo. A bad entry (not JSON, an unknown key, a bad label
format, a name that clashes with a built-in dataset) is not registered: importing warns once, naming the file, and
using the name raises :class:`CatalogueError` naming the entry and its file (:func:`check_catalogued`, called by
:func:`mfuser.evaluation.check_registered`). A folder that disappeared is reported the same way when the domain is
used.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog
from PIL import Image

from mfuser.utils.io import atomic_write_json

from .classes import CITYSCAPES_CLASSES, IGNORE_LABEL, NUM_CLASSES
from .datasets.common import pair_files
from .datasets.register import BUILTIN_DATASETS, close_dataset_names, default_root, project_dataset_names, unregister
from .datasets.synthetic import SYNTHETIC_DATASETS
from .datasets.target_domain import register_target_domain
from .labels import LABEL_FORMATS, read_label

__all__ = [
    "CATALOGUE_DIRNAME",
    "ENTRY_VERSION",
    "CatalogueError",
    "DomainEntry",
    "DomainSummary",
    "catalogue_dir",
    "catalogue_problems",
    "catalogued_names",
    "check_catalogued",
    "check_name",
    "new_entry",
    "read_catalogue",
    "register_catalogue",
    "remove_entry",
    "reserved_reason",
    "scan_domain",
    "unknown_dataset_message",
    "write_entry",
]

logger = logging.getLogger(__name__)

#: Folder of the catalogue under ``$DETECTRON2_DATASETS``.
CATALOGUE_DIRNAME = "mfuser_domains"
#: Version of the entry format (the ``"mfuser_domain"`` key of every entry).
ENTRY_VERSION = 1

_REQUIRED = ("images", "labels", "image_suffix", "label_suffix", "label_format")
_KEYS = ("mfuser_domain", *_REQUIRED, "num_images")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
_HYDRA_WORDS = ("null", "true", "false", "nan", "inf")  # parsed as values, not strings, in KEY=[...] overrides

# state of the last register_catalogue(): name -> entry, name -> problem
_ENTRIES: Dict[str, DomainEntry] = {}
_PROBLEMS: Dict[str, CatalogueError] = {}


class CatalogueError(KeyError, ValueError):
    """A catalogue entry that cannot be used; the message names the entry, its file and what is wrong.

    A ``KeyError`` (an unusable dataset name, as :func:`mfuser.evaluation.check_registered` raises) and a
    ``ValueError`` (bad input); ``str()`` is the message without the quotes ``KeyError`` adds.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def catalogue_dir(root: str | None = None) -> str:
    """``<root>/mfuser_domains`` (absolute), ``root`` defaulting to ``$DETECTRON2_DATASETS`` (``datasets``)."""
    return os.path.join(os.path.abspath(default_root() if root is None else os.path.expanduser(root)),
                        CATALOGUE_DIRNAME)


def _entry_file(name: str, root: str | None) -> str:
    return os.path.join(catalogue_dir(root), f"{name}.json")


def check_name(name: str) -> str:
    """Return ``name`` if it can name a catalogue entry (a letter, then letters, digits, ``_ . -``; not a word a
    command-line override reads as a value such as ``null``), else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.lower() in _HYDRA_WORDS:
        raise ValueError(f"dataset name {name!r}: expected a letter followed by letters, digits, '_', '.' or '-' "
                         f"(at most 100 characters, not one of {_HYDRA_WORDS}), e.g. 'dashcam_val'")
    return name


def reserved_reason(name: str) -> str | None:
    """Why ``name`` cannot be a catalogue entry (a built-in, generated or detectron2 dataset, or one registered by
    code), or None."""
    if name in BUILTIN_DATASETS:
        return "clashes with the built-in dataset of the same name (datasets/README.md)"
    if name in SYNTHETIC_DATASETS:
        return "clashes with the generated dataset of the same name (mfuser.data.register_synthetic)"
    if name in DatasetCatalog.list() and name not in _ENTRIES:
        return "clashes with a dataset already registered by code (detectron2's or register_target_domain)"
    return None


@dataclass(frozen=True)
class DomainEntry:
    """One catalogue entry. ``images`` / ``labels`` are absolute; ``path`` is the entry file."""

    name: str
    images: str
    labels: str
    image_suffix: str
    label_suffix: str
    label_format: str
    path: str
    num_images: int | None = None

    @property
    def origin(self) -> str:
        """``catalogue entry <file>``: how errors name the entry."""
        return f"catalogue entry {self.path}"

    def error(self, problem: str) -> CatalogueError:
        """A :class:`CatalogueError` naming this entry and its file."""
        return CatalogueError(f"dataset {self.name!r} ({self.origin}): {problem}")

    def to_json(self) -> dict:
        """The entry file's content."""
        out = {"mfuser_domain": ENTRY_VERSION, "images": self.images, "labels": self.labels,
               "image_suffix": self.image_suffix, "label_suffix": self.label_suffix, "label_format": self.label_format}
        if self.num_images is not None:
            out["num_images"] = int(self.num_images)
        return out

    def check_folders(self) -> None:
        """Raise :class:`CatalogueError` naming the entry and the folder when ``images`` or ``labels`` is gone."""
        for key, folder in (("images", self.images), ("labels", self.labels)):
            if not os.path.isdir(folder):
                raise self.error(f"the {key} folder {folder} does not exist (moved or deleted?). Register it again "
                                 f"with tools/register_domain.py {self.name} --images DIR --labels DIR --overwrite, "
                                 f"or remove it with tools/register_domain.py --remove {self.name}")

    def register(self) -> str:
        """Register the entry through :func:`mfuser.data.register_target_domain` (lazily: no disk access)."""
        return register_target_domain(self.name, self.images, self.labels, image_suffix=self.image_suffix,
                                      label_suffix=self.label_suffix, label_format=self.label_format,
                                      overwrite=True, origin=self.origin)


def _parse(path: str, root: str | None) -> DomainEntry:
    """Read and validate one entry file; :class:`CatalogueError` naming the file and the bad value."""
    name = os.path.basename(path)[: -len(".json")]

    def bad(problem: str) -> CatalogueError:
        return CatalogueError(f"dataset {name!r} (catalogue entry {path}): {problem}")

    try:
        check_name(name)
    except ValueError as e:
        raise bad(f"the file name gives the dataset name; {e}") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not a readable JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object with keys {list(_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_KEYS))
    missing = [k for k in _REQUIRED if k not in data]
    if unknown or missing:
        found = [f"{what} key(s) {keys}" for what, keys in (("unknown", unknown), ("missing", missing)) if keys]
        raise bad(f"{' and '.join(found)}; the keys are {list(_KEYS)} (num_images optional)")
    if data.get("mfuser_domain", ENTRY_VERSION) != ENTRY_VERSION:
        raise bad(f"mfuser_domain: expected {ENTRY_VERSION} (the entry format version), got {data['mfuser_domain']!r}")
    for key in _REQUIRED:
        if not isinstance(data[key], str) or not data[key]:
            raise bad(f"{key}: expected a non-empty string, got {data[key]!r}")
    if data["label_format"] not in LABEL_FORMATS:
        raise bad(f"label_format: expected one of {list(LABEL_FORMATS)}, got {data['label_format']!r}")
    num = data.get("num_images")
    if num is not None and (not isinstance(num, int) or isinstance(num, bool) or num < 0):
        raise bad(f"num_images: expected a non-negative integer or null, got {num!r}")
    reason = reserved_reason(name)
    if reason:
        raise bad(f"{reason}; rename the file (the file name is the dataset name)")
    base = os.path.abspath(default_root() if root is None else os.path.expanduser(root))
    folders = [os.path.normpath(os.path.join(base, os.path.expanduser(data[k]))) for k in ("images", "labels")]
    return DomainEntry(name, *folders, data["image_suffix"], data["label_suffix"], data["label_format"], path, num)


def read_catalogue(root: str | None = None) -> Tuple[Dict[str, DomainEntry], Dict[str, CatalogueError]]:
    """Every entry of the catalogue under ``root``: ``({name: entry}, {name: problem})``, sorted by name.

    A missing catalogue folder is an empty catalogue; an unreadable one is reported under the name ``"*"``.
    """
    folder = catalogue_dir(root)
    entries, problems = {}, {}
    try:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".json") and not f.startswith("."))
    except FileNotFoundError:
        return entries, problems
    except OSError as e:
        problems["*"] = CatalogueError(f"catalogue folder {folder} cannot be read: {e}")
        return entries, problems
    for fn in files:
        path = os.path.join(folder, fn)
        try:
            entry = _parse(path, root)
        except CatalogueError as e:
            problems[fn[: -len(".json")]] = e
        else:
            entries[entry.name] = entry
    return entries, problems


def register_catalogue(root: str | None = None) -> List[str]:
    """Register every good entry of the catalogue under ``root`` (default ``$DETECTRON2_DATASETS``), log one
    warning per bad entry, and forget the entries of an earlier call that are gone. Returns the registered names.

    ``import mfuser.data`` calls it; call it again after changing the catalogue or ``$DETECTRON2_DATASETS``.
    """
    for name in list(_ENTRIES):
        unregister(name)
    _ENTRIES.clear()
    _PROBLEMS.clear()
    entries, problems = read_catalogue(root)
    for name, entry in entries.items():
        try:
            entry.register()
        except ValueError as e:  # e.g. the name was registered by code meanwhile
            problems[name] = entry.error(str(e))
        else:
            _ENTRIES[name] = entry
    _PROBLEMS.update(problems)
    for name, problem in problems.items():
        logger.warning(f"ignoring {problem}" + (f" (tools/register_domain.py --remove {name} deletes it)"
                                               if name != "*" else ""))
    return list(_ENTRIES)


def catalogued_names() -> List[str]:
    """Names registered from the catalogue by the last :func:`register_catalogue`."""
    return list(_ENTRIES)


def catalogue_problems() -> Dict[str, CatalogueError]:
    """``{name: error}`` of the bad entries seen by the last :func:`register_catalogue`."""
    return dict(_PROBLEMS)


def check_catalogued(names: Sequence[str]) -> None:
    """Raise :class:`CatalogueError` (naming the entry and its file) for the first of ``names`` that has a bad
    catalogue entry or whose folders are gone; names that are not catalogued pass."""
    for name in names:
        if name in _PROBLEMS:
            raise _PROBLEMS[name]
        if name in _ENTRIES:
            _ENTRIES[name].check_folders()


def unknown_dataset_message(missing: Sequence[str], what: str = "dataset") -> str:
    """One line for unregistered ``missing`` names: the close names among the project's datasets (built-in,
    generated, catalogued, registered by code; not detectron2's COCO & co.), the project's datasets, and how to
    register a folder."""
    known = project_dataset_names()
    close = list(dict.fromkeys(c for n in missing for c in close_dataset_names(str(n), known)))  # best first
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"{what} {', '.join(repr(str(n)) for n in missing)} not registered.{hint} Registered datasets of this "
            f"project: {', '.join(known)}. Register a folder of images + labels by name with "
            "`python tools/register_domain.py NAME --images DIR --labels DIR` (datasets/README.md), or call "
            "mfuser.data.register_target_domain(...) in a module the config imports.")


def write_entry(entry: DomainEntry, *, overwrite: bool = False) -> str:
    """Write ``entry`` to its file atomically; refuse to replace an existing one unless ``overwrite``."""
    if os.path.exists(entry.path) and not overwrite:
        raise entry.error("already in the catalogue; pass --overwrite (overwrite=True) to replace it")
    return atomic_write_json(entry.path, entry.to_json(), indent=2)


def remove_entry(name: str, root: str | None = None) -> str:
    """Delete the entry file of ``name`` (good or bad) and unregister it. Returns the removed file."""
    path = _entry_file(name, root)
    if not os.path.isfile(path):
        names = [f[: -len(".json")] for f in _list_json(catalogue_dir(root))]
        close = close_dataset_names(name, names)
        raise CatalogueError(f"no catalogue entry {name!r} ({path} does not exist)."
                             + (f" Did you mean {', '.join(map(repr, close))}?" if close else "")
                             + f" Catalogued: {', '.join(names) if names else 'none'}")
    os.remove(path)
    if name in _ENTRIES:
        unregister(name)
        del _ENTRIES[name]
    _PROBLEMS.pop(name, None)
    return path


def _list_json(folder: str) -> List[str]:
    try:
        return sorted(f for f in os.listdir(folder) if f.endswith(".json") and not f.startswith("."))
    except OSError:
        return []


def new_entry(name: str, images: str, labels: str, *, image_suffix: str, label_suffix: str,
              label_format: str = "trainid", root: str | None = None) -> DomainEntry:
    """A :class:`DomainEntry` for ``name`` in the catalogue under ``root`` (folders made absolute); raises
    ``ValueError`` for a bad name, suffix or label format and :class:`CatalogueError` for a reserved name."""
    check_name(name)
    path = _entry_file(name, root)
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label format: expected one of {list(LABEL_FORMATS)}, got {label_format!r}")
    for arg, value in (("image suffix", image_suffix), ("label suffix", label_suffix)):
        if not value:
            raise ValueError(f"{arg}: expected a non-empty file-name ending such as '.png'")
    entry = DomainEntry(name, os.path.abspath(os.path.expanduser(images)), os.path.abspath(os.path.expanduser(labels)),
                        image_suffix, label_suffix, label_format, path)
    reason = reserved_reason(name)
    if reason:
        raise entry.error(f"{reason}; choose another name")
    return entry


# ------------------------------------------------------------------------------------------ checking a folder
@dataclass
class DomainSummary:
    """What :func:`scan_domain` found: ``num_pairs`` pairs; ``pixels[t]`` labelled pixels and ``images[t]`` images
    holding trainId ``t`` (index 19 = ignore)."""

    num_pairs: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES + 1, np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES + 1, np.int64))

    def table(self) -> str:
        """Per-class pixel counts (share of the labelled, non-ignore pixels) and images per class."""
        from tabulate import tabulate

        labelled = int(self.pixels[:NUM_CLASSES].sum())
        rows = [[t, c, int(self.pixels[t]), f"{100.0 * self.pixels[t] / max(labelled, 1):.2f}", int(self.images[t])]
                for t, c in enumerate(CITYSCAPES_CLASSES)]
        rows.append([IGNORE_LABEL, "(ignore)", int(self.pixels[-1]), "-", int(self.images[-1])])
        return tabulate(rows, headers=["trainId", "class", "pixels", "% labelled", "images"], tablefmt="simple")

    def absent_classes(self) -> List[str]:
        """Classes with no pixel: their IoU is NaN and left out of the domain's mIoU."""
        return [c for t, c in enumerate(CITYSCAPES_CLASSES) if self.pixels[t] == 0]


def _image_hw(path: str) -> Tuple[int, int]:
    """(height, width) as the loaders see the image (EXIF rotation applied); ``ValueError`` naming the file."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
                w, h = h, w
    except Exception as e:  # PIL raises many types for non-image / truncated files
        raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    return h, w


def _check_pair(image: str, label: str, label_format: str) -> np.ndarray:
    """The label as trainIds, checked as the evaluation checks it (values of its format, its image's height and
    width); ``ValueError`` naming the file(s) otherwise."""
    return read_label(label, label_format, NUM_CLASSES, image_file=image, image_size=_image_hw(image))


def scan_domain(entry: DomainEntry, *, progress: bool = False, max_reported: int = 3) -> DomainSummary:
    """Check every pair of ``entry`` as the evaluation will read it and count the pixels per class.

    Checks: both folders exist, images and labels pair up (none left over), each label has its image's height and
    width and only values of its label format. Raises :class:`CatalogueError` naming the entry, its file and the
    first ``max_reported`` bad files (with the count of bad files).
    """
    from tqdm import tqdm

    entry.check_folders()
    hint = ("Files pair by relative path once the suffixes are removed: check the folders and the image / label "
            "suffixes (--image-suffix, --label-suffix).")
    try:
        pairs = pair_files(entry.images, entry.labels, entry.image_suffix, entry.label_suffix, unpaired_hint="",
                           hint=hint)
    except ValueError as e:
        raise entry.error(str(e).strip()) from None
    summary = DomainSummary(num_pairs=len(pairs))
    problems = []
    for image, label in tqdm(pairs, desc=f"checking {entry.name}", unit="pair", disable=not progress):
        try:
            trainids = _check_pair(image, label, entry.label_format)
        except (OSError, ValueError) as e:
            problems.append(str(e))
            continue
        counts = np.bincount(trainids.ravel(), minlength=256)
        counts = np.concatenate([counts[:NUM_CLASSES], counts[IGNORE_LABEL:IGNORE_LABEL + 1]])
        summary.pixels += counts
        summary.images += counts > 0
    if problems:
        shown = "; ".join(p.rstrip(". ") for p in problems[:max_reported]) + (" ..." if len(problems) > max_reported
                                                                             else "")
        raise entry.error(f"{len(problems)} of {len(pairs)} image/label pairs are invalid for label format "
                          f"{entry.label_format!r}: {shown}")
    return summary
