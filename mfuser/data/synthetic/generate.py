"""Generation and resume: writing the domains to disk in the layouts of the real datasets.

:func:`generate_domain` renders one domain into its dataset root (file names: :func:`domain_files`; the
source also gets the rare-class statistics of :mod:`mfuser.data.rcs_stats`); :func:`generate_all` writes
the source and the three targets under one root.

Resume protocol: ``generate_all`` first writes the manifest ``<root>/.synthetic_generation.json`` (the
parameters); each domain writes its completion marker ``<root>/<domain>/.synthetic_complete.json`` after
all its files, and ``generate_all`` writes ``<root>/.synthetic_complete.json`` last. A rerun with the
same parameters skips every domain whose marker matches and whose files exist, and regenerates the
others. Images are written in place (an interrupted domain has no marker, so it is regenerated); the JSON
files are written atomically (:func:`mfuser.utils.io.atomic_write_json`).
"""

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from mfuser.utils.io import atomic_write_json

from ..classes import NUM_CLASSES
from ..rcs_stats import RCS_STATS_FILENAME, save_class_stats
from .render import GENERATOR_VERSION, check_size, render_scene
from .styles import DOMAINS, STYLES, check_domain

__all__ = ["generate_domain", "generate_all", "domain_files"]

MARKER = ".synthetic_complete.json"  # written last in a domain root / in the generation root
MANIFEST = ".synthetic_generation.json"  # written first in the generation root (resume key)
_CITIES = ("synthbach", "synthburg", "synthdorf")
_JSON = dict(indent=1, sort_keys=True)  # json.dump arguments of the markers and the manifest


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
    check_domain(domain)
    return [_name(domain, i, seed) for i in range(int(num_images))]


def _write_one(args) -> Tuple[int, List[int]]:
    """Render and write one image and its label(s); returns ``(index, per-class pixel counts)`` (a worker job)."""
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


def _read_json(path: str):
    """The parsed JSON file, or ``None`` when it is missing or unreadable (e.g. left by an interrupted run)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_rcs_stats(root: str, files: List[Tuple[str, ...]], counts: List[List[int]]) -> None:
    """Per-label class pixel counts for rare-class sampling (:mod:`mfuser.data.rcs_stats`) in ``root``."""
    stats = {os.path.join(root, paths[1]): cnt for paths, cnt in zip(files, counts)}
    save_class_stats(os.path.join(root, RCS_STATS_FILENAME), stats, num_classes=NUM_CLASSES)


def _params(domain: str, num_images: int, size, seed: int) -> dict:
    """The parameters a domain's completion marker must match for the domain to count as complete."""
    W, H = check_size(size)
    return dict(domain=domain, num_images=int(num_images), size=[W, H], seed=int(seed), version=GENERATOR_VERSION)


def generate_domain(root: str, domain: str, num_images: int, size=(512, 256), seed: int = 0, workers: int = 1) -> dict:
    """Render ``num_images`` scenes of ``domain`` into ``root`` (the dataset root of that domain).

    Files are written in the layout of the real dataset (see :mod:`mfuser.data.synthetic`); the completion marker
    ``root/.synthetic_complete.json`` is written last and holds the parameters and the per-class pixel
    counts (``class_pixels``, list of 19 ints). Existing files with the same names are overwritten; other
    files in ``root`` are left alone.

    Returns:
        the marker dict: ``{"domain", "num_images", "size", "seed", "version", "class_pixels", "files"}``,
        ``files`` being the ``[image, label, ...]`` paths relative to ``root``.
    """
    check_domain(domain)
    if int(num_images) < 1:
        raise ValueError(f"num_images: expected >= 1, got {num_images}")
    if int(workers) < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    params = _params(domain, num_images, size, seed)
    os.makedirs(root, exist_ok=True)
    marker = os.path.join(root, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
    jq = STYLES[domain].jpeg
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
    atomic_write_json(marker, out, **_JSON)
    return out


def _is_complete(root: str, params: dict) -> bool:
    """Whether the domain root holds a marker with ``params`` and every file that marker lists."""
    m = _read_json(os.path.join(root, MARKER))
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
        check_domain(d)
    if int(num_source) < 1 or int(num_target) < 1:
        raise ValueError(f"num_source and num_target must be >= 1, got {num_source}, {num_target}")
    W, H = check_size(size)
    manifest = dict(
        num_source=int(num_source),
        num_target=int(num_target),
        size=[W, H],
        seed=int(seed),
        version=GENERATOR_VERSION,
        domains=list(domains),
    )
    man_path = os.path.join(root, MANIFEST)
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
            for name in list(DOMAINS) + [MANIFEST, MARKER]:
                p = os.path.join(root, name)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)
    os.makedirs(root, exist_ok=True)
    if os.path.exists(os.path.join(root, MARKER)) and _read_json(man_path) == manifest:
        top = _read_json(os.path.join(root, MARKER))
        if isinstance(top, dict) and all(
            _is_complete(os.path.join(root, d), _params(d, num_source if d == "source" else num_target, (W, H), seed))
            for d in domains
        ):
            return {d: os.path.join(root, d) for d in domains}
    if os.path.exists(os.path.join(root, MARKER)):
        os.remove(os.path.join(root, MARKER))
    atomic_write_json(man_path, manifest, **_JSON)
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
    atomic_write_json(os.path.join(root, MARKER), dict(manifest, roots={d: d for d in domains}), **_JSON)
    return out

