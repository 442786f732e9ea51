"""Dataset preparation: one module per dataset (``cityscapes``, ``gta5``, ``synthia``, ``mapillary``, each with
the ``main(argv)`` that ``datasets/prepare_<name>.py`` runs) and, here, their shared machinery: label converters, a
parallel idempotent runner with a progress bar and atomic writes, the summary, and the rare-class statistics.

Every output is written with :func:`mfuser.utils.io.atomic_write` (a temporary file in the destination
folder, then renamed onto the output), so an interrupted run leaves either the old file, the new file or a
``.tmp-*`` file (ignored by the loaders), never a truncated label. A run skips outputs that already exist and decode as
valid trainId labels of the expected size (``--overwrite`` redoes them).

Each source label is checked as the evaluator and the training mapper check it (:func:`mfuser.data.labels.read_label`):
its values must be in its format's valid set (e.g. Cityscapes/GTA5 ids of the official table, Mapillary v1.2 ids
0..65), and, when the job names its image, it must have exactly the image's height and width
(:class:`mfuser.data.labels.LabelError` names both files). GTA5 jobs (``resize_to_image``) resize a label of
another size to its image instead, except one whose height and width are swapped.
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from mfuser.utils.io import atomic_write

from ..classes import NUM_CLASSES, SYNTHIA_ID_TO_TRAINID, apply_mapping
from ..datasets.common import image_size
from ..labels import MAPILLARY_V12_ID_VALUES, check_label_size, read_label, read_label_ids, write_label
from ..rcs_stats import save_class_stats
from ..samplers import class_pixel_counts

__all__ = [
    "Job",
    "Result",
    "make_parser",
    "run_main",
    "run_jobs",
    "print_summary",
    "write_stats",
    "convert_cityscapes_ids",
    "convert_synthia",
    "convert_mapillary",
    "resize_half",
]


@dataclass
class Job:
    """Convert ``src`` into the trainId label ``dst``.

    ``image``: the label's image, when known: the label must have exactly its height and width, or, with
    ``resize_to_image`` (GTA5), is resized (nearest, reported) to it unless its height and width are swapped.
    ``mapping``: optional argument passed to the converter (e.g. the Mapillary id mapping).
    """

    src: str
    dst: str
    image: str | None = None
    mapping: Dict[int, int] | None = None
    resize_to_image: bool = False


@dataclass
class Result:
    job: Job
    status: str  # "converted" | "skipped" | "failed"
    note: str = ""
    counts: List[int] | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------- converters
# converter(src, mapping=None, *, image_file=None, image_size=None) -> (H, W) uint8 trainIds; ``image_size``
# (H, W), when given, is the exact size the label must have (LabelError naming ``src`` and ``image_file``).
def convert_cityscapes_ids(src: str, mapping=None, *, image_file=None, image_size=None) -> np.ndarray:
    """Cityscapes / GTA5 label ids (``*_labelIds.png``) -> trainIds with the official table; ids outside the
    table are an error."""
    return read_label(src, "cityscapes_id", image_file=image_file, image_size=image_size)


def convert_synthia(src: str, mapping=None, *, image_file=None, image_size=None) -> np.ndarray:
    """SYNTHIA 16-bit ``GT/LABELS`` PNG: class id in the R channel (the last channel of OpenCV's BGR order)."""
    raw = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"Cannot decode SYNTHIA label {src}")
    if raw.ndim == 3:
        raw = raw[:, :, 2]  # R of BGR / BGRA
    if raw.dtype.kind not in "ui":
        raise ValueError(f"SYNTHIA label {src}: expected an integer PNG, got {raw.dtype}")
    if image_size is not None:
        check_label_size(raw.shape, image_size, label_file=src, image_file=image_file)
    return apply_mapping(raw, mapping or SYNTHIA_ID_TO_TRAINID)


def convert_mapillary(src: str, mapping=None, *, image_file=None, image_size=None) -> np.ndarray:
    """Mapillary Vistas v1.2 label: palette PNG whose palette indices are the Vistas class ids (not the colours);
    ids outside 0..65 are an error. ``mapping`` replaces :data:`~mfuser.data.classes.MAPILLARY_V12_ID_TO_TRAINID`."""
    if mapping is None:
        return read_label(src, "mapillary_v12", image_file=image_file, image_size=image_size)
    ids = read_label_ids(src, MAPILLARY_V12_ID_VALUES, label_format="mapillary_v12", image_file=image_file,
                         image_size=image_size)
    return apply_mapping(ids, mapping)


CONVERTERS: Dict[str, Callable] = {
    "cityscapes_id": convert_cityscapes_ids,
    "synthia": convert_synthia,
    "mapillary": convert_mapillary,
}


def process_job(job: Job, converter: str, overwrite: bool, want_counts: bool, num_classes: int = NUM_CLASSES) -> Result:
    """Convert (or validate and skip) one label. Never raises: failures come back as ``Result("failed")``."""
    try:
        expected = image_size(job.image or job.src)  # (height, width) from the header
        if not overwrite and os.path.exists(job.dst):
            try:
                label = read_label(job.dst, "trainid", num_classes, image_file=job.image, image_size=expected)
                counts = class_pixel_counts(label, num_classes) if want_counts else None
                return Result(job, "skipped", counts=counts)
            except Exception:
                pass  # invalid existing output: convert again
        exact = expected if job.image and not job.resize_to_image else None  # the size the source label must have
        label = CONVERTERS[converter](job.src, job.mapping, image_file=job.image, image_size=exact)
        note = ""
        if label.shape != expected:  # only a resize_to_image job gets here
            if label.shape == expected[::-1]:
                check_label_size(label.shape, expected, label_file=job.src, image_file=job.image,
                                 hint="A label whose height and width are swapped is not resized.")
            note = (
                f"label {job.src} is {label.shape[1]}x{label.shape[0]} but image {job.image} is "
                f"{expected[1]}x{expected[0]}: label resized (nearest) to the image size"
            )
            label = cv2.resize(label, (expected[1], expected[0]), interpolation=cv2.INTER_NEAREST)
        write_label(label, job.dst)
        return Result(job, "converted", note, class_pixel_counts(label, num_classes) if want_counts else None)
    except Exception as e:
        return Result(job, "failed", f"{job.src}: {type(e).__name__}: {e}")


def _call(args):
    fn, a = args
    return fn(*a)


def run_jobs(fn: Callable, arg_tuples: Sequence[tuple], *, workers: int, desc: str) -> list:
    """``[fn(*args) for args in arg_tuples]`` in ``workers`` processes (serial when ``workers <= 1``), with a
    tqdm progress bar; results in input order."""
    results = [None] * len(arg_tuples)
    bar = tqdm(total=len(arg_tuples), desc=desc, unit="file", dynamic_ncols=True)
    if workers <= 1:
        for i, a in enumerate(arg_tuples):
            results[i] = fn(*a)
            bar.update(1)
    else:
        with ProcessPoolExecutor(workers) as ex:
            futures = {ex.submit(_call, (fn, a)): i for i, a in enumerate(arg_tuples)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
    bar.close()
    return results


def convert_labels(jobs: Sequence[Job], converter: str, *, workers: int, overwrite: bool, want_counts: bool, desc: str):
    return run_jobs(process_job, [(j, converter, overwrite, want_counts) for j in jobs], workers=workers, desc=desc)


def print_summary(
    title: str, results: Sequence[Result], extra_failures: Sequence[str] = (), max_lines: int = 20
) -> int:
    """Print converted / skipped / failed counts, failure reasons and notes. Returns the number of failures."""
    conv = [r for r in results if r.status == "converted"]
    skip = [r for r in results if r.status == "skipped"]
    fail = [r.note for r in results if r.status == "failed"] + list(extra_failures)
    notes = [r.note for r in results if r.status == "converted" and r.note]
    print(f"{title}: {len(conv)} converted, {len(skip)} skipped (already valid), {len(fail)} failed")
    for label, lines in (("note", notes), ("FAILED", fail)):
        for line in lines[:max_lines]:
            print(f"  {label}: {line}")
        if len(lines) > max_lines:
            print(f"  ... and {len(lines) - max_lines} more")
    return len(fail)


def write_stats(path: str, results: Sequence[Result], *, split: str = "", num_classes: int = NUM_CLASSES) -> bool:
    """Write the rare-class statistics from the results' counts; refuses (returns False) if any failed."""
    if not results:
        return False
    if any(r.status == "failed" or r.counts is None for r in results):
        print(f"Rare-class statistics NOT written to {path}: some labels failed")
        return False
    save_class_stats(path, {r.job.dst: r.counts for r in results}, num_classes=num_classes, split=split)
    print(f"Rare-class statistics of {len(results)} labels written to {path}")
    return True


def resize_half(image_src: str, label_src: str, image_dst: str, label_dst: str, overwrite: bool) -> Result:
    """Write a half-resolution copy of an image (JPEG, bilinear) and its trainId label (PNG, nearest)."""
    job = Job(label_src, label_dst, image=image_src)
    try:
        img = Image.open(image_src)
        img.load()
        w, h = img.size
        size = (max(1, w // 2), max(1, h // 2))
        if not overwrite and os.path.exists(image_dst) and os.path.exists(label_dst):
            try:
                lab = read_label(label_dst, "trainid")
                with Image.open(image_dst) as im2:
                    im2.load()
                    if lab.shape == (size[1], size[0]) and im2.size == size:
                        return Result(job, "skipped")
            except Exception:
                pass
        label = read_label(label_src, "trainid", image_file=image_src, image_size=(h, w))
        small = img.convert("RGB").resize(size, Image.BILINEAR)
        atomic_write(image_dst, lambda tmp: small.save(tmp, format="JPEG", quality=95), suffix=".jpg")
        write_label(cv2.resize(label, size, interpolation=cv2.INTER_NEAREST), label_dst)
        return Result(job, "converted")
    except Exception as e:
        return Result(job, "failed", f"{image_src}: {type(e).__name__}: {e}")


def run_main(main: Callable[[], int]) -> int:
    """Run a script's ``main``; a missing dataset folder ends with its message instead of a traceback."""
    from ..datasets.common import DatasetNotFoundError

    try:
        return main()
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def make_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", metavar="ROOT", help="the dataset root folder")
    p.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="parallel processes (default: %(default)s)"
    )
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist and are valid")
    return p
