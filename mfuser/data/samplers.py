"""Rare-class sampling (DAFormer-style, docs/reference.md, "Training recipe") as a detectron2 training sampler.

How it works:

1. Class statistics: for every training label, the number of pixels of each class. The preparation
   scripts write them to ``<dataset root>/rcs_class_stats.json``; :mod:`mfuser.data.rcs_stats` owns that
   file (name, format, reader, writer). When the file is missing, :func:`load_or_compute_class_stats`
   raises (naming the file and the script to run) unless ``compute_missing=True``, in which case the
   statistics are computed from the labels (a full pass over the dataset, logged).
2. Class probabilities: ``p(c) = softmax((1 - f_c) / T)`` with ``f_c`` the share of class ``c`` among all
   labelled pixels and ``T = 100`` (almost uniform). Only classes with at least one image holding more
   than ``min_pixels`` (3000) pixels of them take part; classes that never reach it are logged and left out.
3. :class:`RareClassSampler` draws a class, then uniformly an image with more than ``min_pixels`` pixels
   of it, forever, deterministic per ``seed``; rank ``r`` of ``W`` takes elements ``r, r+W, ...`` of the
   stream (as detectron2's ``TrainingSampler``).
4. The sampled class reaches the mapper through the index: the sampler yields
   ``image_index + N * (class + 1)`` (N = number of images), and :class:`RareClassDataset` decodes it into a
   copy of the dataset dict with ``"rcs_class": class``. Indices below N are plain images, so the dataset
   also works with an ordinary sampler. The mapper (:class:`~mfuser.data.mappers.MFuserSemanticDatasetMapper`)
   redraws its random crop up to 10 times until the crop holds more than ``min_pixels * min_crop_ratio``
   (1500) pixels of that class.

Usage::

    dicts = DatasetCatalog.get("gta5_train")
    sampler = RareClassSampler(dicts, load_or_compute_class_stats("gta5_train", dicts))
    loader = build_detection_train_loader(dataset=RareClassDataset(dicts), sampler=sampler,
                                          mapper=MFuserSemanticDatasetMapper(augmentations=build_train_augmentations()),
                                          total_batch_size=2)

or :func:`mfuser.data.build.build_resumable_rcs_train_loader` (LazyConfig-friendly; what the configs use), which
does this with a resumable sampler and without aspect-ratio grouping.

Resuming: :class:`ResumableSampler` wraps any of these infinite deterministic streams and drops the indices an
interrupted run already consumed (see its docstring); :func:`find_resumable_sampler` finds it in a train loader.
:class:`PositionSeededDataset` makes each sample's augmentation a function of the seed and its stream position.
"""

import itertools
import logging
import os
import random
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Iterator, List, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from torch.utils.data import Dataset, Sampler

from .classes import NUM_CLASSES
from .labels import read_label
from .rcs_stats import load_class_stats

__all__ = [
    "class_pixel_counts",
    "label_class_counts",
    "compute_class_stats",
    "load_or_compute_class_stats",
    "rcs_class_probabilities",
    "RareClassSampler",
    "RareClassDataset",
    "ResumableSampler",
    "PositionSeededDataset",
    "find_resumable_sampler",
]

logger = logging.getLogger(__name__)


def class_pixel_counts(label: np.ndarray, num_classes: int = NUM_CLASSES) -> List[int]:
    """Pixel count of each class ``0..K-1`` in a uint8 trainId label array (ignore pixels not counted)."""
    return np.bincount(label.ravel(), minlength=256)[:num_classes].astype(int).tolist()


def label_class_counts(path: str, label_format="trainid", num_classes: int = NUM_CLASSES) -> List[int]:
    """Pixel count of each class ``0..K-1`` in one label file (ignore pixels not counted)."""
    return class_pixel_counts(read_label(path, label_format, num_classes), num_classes)


def _count_job(args):
    return label_class_counts(*args)


def compute_class_stats(
    dataset_dicts: Sequence[dict], label_format="trainid", num_classes: int = NUM_CLASSES, workers: int = 0
) -> Dict[str, List[int]]:
    """``{sem_seg_file_name: [pixels of class 0..K-1]}`` for every record (``workers`` > 1: processes)."""
    jobs = [(d["sem_seg_file_name"], d.get("label_format", label_format), num_classes) for d in dataset_dicts]
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            counts = list(ex.map(_count_job, jobs, chunksize=16))
    else:
        counts = [_count_job(j) for j in jobs]
    return {j[0]: c for j, c in zip(jobs, counts)}


def load_or_compute_class_stats(
    dataset_name: str,
    dataset_dicts: Sequence[dict] | None = None,
    *,
    stats_file: str | None = None,
    compute_missing: bool = False,
    workers: int = 0,
) -> List[List[int]]:
    """Per-record class pixel counts for a registered dataset, aligned with ``dataset_dicts``.

    Reads ``stats_file`` (default: the dataset metadata's ``rcs_stats_file``). A missing file, or records missing
    from it, raise ``FileNotFoundError`` / ``ValueError`` naming the file and the preparation script, unless
    ``compute_missing``: then the missing counts are computed from the labels.
    """
    meta = MetadataCatalog.get(dataset_name)
    dicts = list(DatasetCatalog.get(dataset_name) if dataset_dicts is None else dataset_dicts)
    num_classes = len(meta.get("stuff_classes", [None] * NUM_CLASSES))
    stats_file = stats_file or meta.get("rcs_stats_file", None)
    stats: Dict[str, List[int]] = {}
    if stats_file and os.path.isfile(stats_file):
        stats = load_class_stats(stats_file)
    elif not compute_missing:
        raise FileNotFoundError(
            f"Rare-class sampling for {dataset_name!r} needs the class statistics file {stats_file}, which does not "
            "exist. The preparation scripts write it (e.g. `python datasets/prepare_gta5.py ROOT`); or pass "
            "compute_missing=True to compute it from the labels now."
        )
    keys = [os.path.normpath(os.path.abspath(d["sem_seg_file_name"])) for d in dicts]
    missing = [d for d, k in zip(dicts, keys) if k not in stats]
    if missing:
        if not compute_missing:
            raise ValueError(
                f"{len(missing)} of {len(dicts)} labels of {dataset_name!r} are not in {stats_file} (e.g. "
                f"{missing[0]['sem_seg_file_name']}): the file is out of date; rerun the preparation script or pass "
                "compute_missing=True."
            )
        logger.info(f"Computing rare-class statistics of {len(missing)} labels of {dataset_name!r} ...")
        new = compute_class_stats(missing, meta.get("label_format", "trainid"), num_classes, workers)
        stats.update({os.path.normpath(os.path.abspath(k)): v for k, v in new.items()})
    return [list(stats[k]) for k in keys]


def rcs_class_probabilities(class_counts: Sequence[Sequence[int]], temperature: float = 100.0) -> np.ndarray:
    """``softmax((1 - f) / T)`` over classes with non-zero pixels (others get probability 0)."""
    totals = np.asarray(class_counts, dtype=np.float64).sum(axis=0)
    if totals.sum() <= 0:
        raise ValueError("Rare-class sampling: the labels contain no labelled pixels")
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    freq = totals / totals.sum()
    logits = np.where(totals > 0, (1.0 - freq) / temperature, -np.inf)
    p = np.exp(logits - logits[totals > 0].max())
    return p / p.sum()


class RareClassSampler(Sampler):
    """Infinite stream of ``image_index + N * (class + 1)`` indices for :class:`RareClassDataset`.

    Args:
        dataset_dicts: the N training records (only their number and order matter).
        class_counts: per record, the pixel count of each of the K classes (aligned with ``dataset_dicts``).
        temperature: T of the class distribution (reference: 100).
        min_pixels: an image is eligible for class c if it holds more than this many pixels of c (3000).
        seed: shared by all ranks; None draws a shared random seed (as detectron2's TrainingSampler).
    """

    def __init__(
        self,
        dataset_dicts: Sequence[dict],
        class_counts: Sequence[Sequence[int]],
        *,
        temperature: float = 100.0,
        min_pixels: int = 3000,
        seed: int | None = None,
    ):
        n = len(dataset_dicts)
        if n == 0:
            raise ValueError("RareClassSampler: the dataset is empty")
        if len(class_counts) != n:
            raise ValueError(f"RareClassSampler: {len(class_counts)} class-count rows for {n} records")
        counts = np.asarray(class_counts, dtype=np.int64)
        self.num_images, self.num_classes = n, counts.shape[1]
        probs = rcs_class_probabilities(counts, temperature)
        self.samples_with_class: Dict[int, List[int]] = {}
        dropped = []
        for c in range(self.num_classes):
            if probs[c] <= 0:
                continue
            idx = np.nonzero(counts[:, c] > min_pixels)[0].tolist()
            if idx:
                self.samples_with_class[c] = idx
            else:
                dropped.append(c)
        if not self.samples_with_class:
            raise ValueError(f"RareClassSampler: no image holds more than min_pixels={min_pixels} pixels of any class")
        if dropped:
            logger.warning(
                f"Rare-class sampling: classes {dropped} never exceed {min_pixels} pixels and are not sampled"
            )
        self.classes = sorted(self.samples_with_class)
        p = probs[self.classes]
        self.class_probs = torch.as_tensor(p / p.sum(), dtype=torch.float64)
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()
        logger.info(
            "Rare-class sampling: "
            + ", ".join(
                f"{c}: p={q:.4f} ({len(self.samples_with_class[c])} imgs)" for c, q in zip(self.classes, p / p.sum())
            )
        )

    def encode(self, image_index: int, cls: int) -> int:
        return image_index + self.num_images * (cls + 1)

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            cls_pos = torch.multinomial(self.class_probs, 256, replacement=True, generator=g).tolist()
            for pos in cls_pos:
                c = self.classes[pos]
                pool = self.samples_with_class[c]
                j = pool[int(torch.randint(len(pool), (1,), generator=g))]
                yield self.encode(j, c)


class RareClassDataset(Dataset):
    """Map-style dataset over ``dataset_dicts`` that decodes :class:`RareClassSampler` indices.

    ``dataset[i]`` for ``i < N`` is record ``i``; for ``i = j + N * (c + 1)`` it is record ``j`` with
    ``"rcs_class": c`` added. ``len = N * (num_classes + 1)``. Records are stored serialized
    (detectron2's ``DatasetFromList``) and returned as fresh copies.
    """

    def __init__(self, dataset_dicts: Sequence[dict], num_classes: int = NUM_CLASSES):
        self._n = len(dataset_dicts)
        if self._n == 0:
            raise ValueError("RareClassDataset: the dataset is empty")
        self._num_classes = num_classes
        self._lst = DatasetFromList(list(dataset_dicts), copy=True, serialize=True)

    def __len__(self) -> int:
        return self._n * (self._num_classes + 1)

    def __getitem__(self, idx: int) -> dict:
        idx = int(idx)
        if not 0 <= idx < len(self):
            raise IndexError(f"RareClassDataset index {idx} out of range [0, {len(self)})")
        j, k = idx % self._n, idx // self._n
        d = self._lst[j]
        if k > 0:
            d["rcs_class"] = k - 1
        return d


# ----------------------------------------------------------------------------------------------- resuming
class ResumableSampler(Sampler):
    """Yield ``sampler``'s indices, skipping the first ``skip`` of them: a resumed run continues the stream.

    What "sampler position" means here. Detectron2's training samplers (``TrainingSampler``,
    ``RepeatFactorTrainingSampler``) and :class:`RareClassSampler` are *infinite, deterministic* streams of
    dataset indices per rank once their seed is fixed. ``build_detection_train_loader`` with
    ``aspect_ratio_grouping=False`` turns that stream into batches in order: worker ``w`` of ``W`` receives
    chunks ``w, w+W, ...`` of ``batch_size`` indices (``ToIterableDataset(shard_chunk_size=batch_size)``) and
    the DataLoader yields workers round-robin, so **batch i is exactly chunk i of the stream, for any number
    of workers**. After ``N`` iterations a rank has therefore consumed exactly ``N * batch_size_per_rank``
    indices; the sampler position is that count.

    Dropping the first ``skip`` indices is cheap (indices only, no images are read). The train script sets
    ``skip = start_iter * batch_size_per_rank`` after loading the checkpoint, so a resumed run sees the same
    batches, in the same order, as an uninterrupted one. Requirements: a fixed sampler seed (``train.seed`` in
    the configs; detectron2's default ``seed=None`` draws a fresh shared seed per run) and
    ``aspect_ratio_grouping=False``.

    Augmentation randomness: with ``tag_positions=N`` (the dataset length) the sampler yields
    ``position * N + index``, ``position`` being the element's place in this rank's stream (skipped ones
    counted). :class:`PositionSeededDataset` decodes it and draws the sample's augmentation from generators seeded
    by ``(seed, rank, position)``, so the random crop / flip / photometric parameters of a sample depend on its
    place in the stream only, not on worker state, and nothing in the workers needs saving for an exact resume.

    Args:
        sampler (Sampler): an infinite deterministic per-rank index stream (fixed seed).
        skip (int): number of indices to drop at the start; usually set later with :meth:`set_skip`.
        tag_positions (int or None): dataset length N to tag indices with their stream position (see above).
    """

    def __init__(self, sampler: Sampler, skip: int = 0, *, tag_positions: int | None = None):
        self.sampler = sampler
        self.tag_positions = None if tag_positions is None else int(tag_positions)
        self.set_skip(skip)

    def set_skip(self, skip: int) -> None:
        """Drop the first ``skip`` indices (``start_iter * batch_size_per_rank``). Call before iterating."""
        if int(skip) < 0:
            raise ValueError(f"ResumableSampler: skip must be >= 0, got {skip}")
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        stream = itertools.islice(iter(self.sampler), self.skip, None)
        if self.tag_positions is None:
            yield from stream
            return
        for position, index in enumerate(stream, start=self.skip):
            yield position * self.tag_positions + int(index)

    def __len__(self):
        return len(self.sampler)


class PositionSeededDataset(Dataset):
    """Map-style dataset that maps each sample with generators seeded by its place in the sample stream.

    ``dataset[position * N + index]`` (indices from ``ResumableSampler(tag_positions=N)``) returns
    ``mapper(base[index])``, computed with Python's ``random``, numpy's and torch's (CPU) global generators seeded
    from ``(seed, rank, position)``; the generators' previous states are restored afterwards, so nothing else in
    the process (or worker) sees a difference. detectron2's augmentations and this project's draw from those global
    generators, which is why they are seeded rather than passed a generator.

    Why not detectron2's ``MapDataset``: it maps with whatever state the worker's generators have, which depends on
    what the worker mapped before (not restored by ``--resume``), and it replaces a sample the mapper rejects by a
    random other one; here a rejected sample is an error naming its file.

    Args:
        dataset: map-style dataset of N dataset dicts (e.g. :class:`RareClassDataset`).
        mapper: dataset dict -> model input dict.
        seed (int): the run's seed (``train.seed``).
    """

    def __init__(self, dataset, mapper, *, seed: int = 0):
        self.dataset, self.mapper, self.seed = dataset, mapper, int(seed)
        self._rank = comm.get_rank()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, code: int):
        position, index = divmod(int(code), len(self.dataset))
        record = self.dataset[index]
        seq = np.random.SeedSequence([self.seed, self._rank, position])
        py_seed, np_seed, torch_seed = (int(x) for x in seq.generate_state(3))
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(py_seed)
            np.random.seed(np_seed)
            torch.default_generator.manual_seed(torch_seed)  # CPU only: CUDA generators are left alone
            out = self.mapper(record)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
        if out is None:
            raise ValueError(f"the training mapper rejected {record.get('file_name', record)!r} (returned None)")
        return out


def find_resumable_sampler(data_loader) -> ResumableSampler | None:
    """Find the :class:`ResumableSampler` inside a detectron2 train loader (or ``None``).

    Walks ``.dataset`` / ``.sampler`` / ``.batch_sampler`` attributes, which is how
    ``build_detection_train_loader`` nests ``DataLoader -> ToIterableDataset -> sampler``.
    """
    seen, todo = set(), [data_loader]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, ResumableSampler):
            return obj
        for attr in ("dataset", "sampler", "batch_sampler"):
            child = getattr(obj, attr, None)
            if child is not None:
                todo.append(child)
    logger.debug("no ResumableSampler found in %r", type(data_loader))
    return None
