"""Resumable training sampler: restart the per-rank index stream where an interrupted run stopped.

What "sampler position" means here. Detectron2's training samplers (``TrainingSampler``,
``RepeatFactorTrainingSampler``, and MFuser's rare-class sampler) are *infinite, deterministic* streams
of dataset indices per rank once their seed is fixed. ``build_detection_train_loader`` with
``aspect_ratio_grouping=False`` turns that stream into batches in order: worker ``w`` of ``W`` receives
chunks ``w, w+W, ...`` of ``batch_size`` indices (``ToIterableDataset(shard_chunk_size=batch_size)``) and
the DataLoader yields workers round-robin, so **batch i is exactly chunk i of the stream, for any number
of workers**. After ``N`` iterations a rank has therefore consumed exactly ``N * batch_size_per_rank``
indices; the sampler position is that count.

:class:`ResumableSampler` wraps such a stream and drops its first ``skip`` indices (cheap: indices
only, no images are read). The train script sets ``skip = start_iter * batch_size_per_rank`` after
loading the checkpoint, so a resumed run sees the same batches, in the same order, as an
uninterrupted one. Requirements: a fixed sampler seed (``train.seed`` in the configs; detectron2's
default ``seed=None`` draws a fresh shared seed per run) and ``aspect_ratio_grouping=False``.
Random augmentation state inside data-loader workers is *not* restored (workers are re-seeded).
"""
import itertools
import logging
from typing import Iterator

from torch.utils.data import Sampler

__all__ = [
    "ResumableSampler",
    "find_resumable_sampler",
    "build_resumable_train_loader",
    "build_resumable_rcs_train_loader",
]


class ResumableSampler(Sampler):
    """Yield ``sampler``'s indices, skipping the first ``skip`` of them.

    Args:
        sampler (Sampler): an infinite deterministic per-rank index stream (fixed seed).
        skip (int): number of indices to drop at the start; usually set later with :meth:`set_skip`.
    """

    def __init__(self, sampler: Sampler, skip: int = 0):
        self.sampler = sampler
        self.set_skip(skip)

    def set_skip(self, skip: int) -> None:
        """Drop the first ``skip`` indices (``start_iter * batch_size_per_rank``). Call before iterating."""
        if int(skip) < 0:
            raise ValueError(f"ResumableSampler: skip must be >= 0, got {skip}")
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self):
        return len(self.sampler)


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
    logging.getLogger(__name__).debug("no ResumableSampler found in %r", type(data_loader))
    return None


def build_resumable_train_loader(
    *,
    dataset,
    mapper,
    total_batch_size: int,
    sampler=None,
    seed: int = 0,
    num_workers: int = 0,
):
    """``build_detection_train_loader`` whose sampler is a :class:`ResumableSampler` (see the module doc).

    Args:
        dataset (list[dict]): dataset dicts (e.g. ``get_detection_dataset_dicts(names)``).
        mapper (callable): dataset dict -> model input dict.
        total_batch_size (int): batch size over all ranks.
        sampler: ``None`` (detectron2 ``TrainingSampler(len(dataset), seed=seed)``), a ``Sampler``, or a
            callable ``sampler(dataset) -> Sampler`` (e.g. a rare-class sampler built from the dataset dicts).
            It must be deterministic given its seed.
        seed (int): seed of the default sampler (the configs pass ``train.seed``).
        num_workers (int): data-loader workers (any value keeps batches in stream order).
    """
    from detectron2.data import build_detection_train_loader
    from detectron2.data.samplers import TrainingSampler

    if sampler is None:
        sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    elif not isinstance(sampler, Sampler) and callable(sampler):
        sampler = sampler(dataset)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler: expected None, a Sampler or a callable returning one, got {type(sampler)}")
    return build_detection_train_loader(
        dataset,
        mapper=mapper,
        sampler=ResumableSampler(sampler),
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=False,
        num_workers=num_workers,
    )


def build_resumable_rcs_train_loader(
    *,
    names,
    mapper,
    total_batch_size: int,
    num_workers: int = 0,
    temperature: float = 100.0,
    min_pixels: int = 3000,
    seed: int = 0,
    compute_missing_stats: bool = False,
):
    """The rare-class-sampling train loader (the source loader of ``configs/common/data/semseg_dg.py``).

    Statistics come from each dataset's metadata ``rcs_stats_file`` (see
    :func:`mfuser.data.samplers.load_or_compute_class_stats`); a :class:`~mfuser.data.samplers.RareClassSampler`
    draws from a :class:`~mfuser.data.samplers.RareClassDataset` over the concatenated records. The loader is
    :func:`build_resumable_train_loader`: the sampler is wrapped in a :class:`ResumableSampler` and
    ``aspect_ratio_grouping=False``. Why not detectron2's default grouping: it regroups indices by aspect ratio
    inside each worker, so batch i is no longer chunk i of the sampler stream and a resumed run could not
    find its place in it (see the module doc); the training crops all have one size, so grouping gains nothing.

    Args:
        names (str or list[str]): registered source datasets (same number of classes).
        mapper: e.g. ``MFuserSemanticDatasetMapper`` (redraws crops for ``"rcs_class"``).
        total_batch_size, num_workers: as in ``build_detection_train_loader``.
        temperature, min_pixels: rare-class sampling (reference: 100, 3000).
        seed: sampler seed (the configs pass ``train.seed``); fixed so that resuming is exact.
        compute_missing_stats: compute class statistics from the labels when the stats file is missing.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from mfuser.data.classes import NUM_CLASSES
    from mfuser.data.samplers import RareClassDataset, RareClassSampler, load_or_compute_class_stats

    names = [names] if isinstance(names, str) else list(names)
    dicts, counts, num_classes = [], [], None
    for name in names:
        d = DatasetCatalog.get(name)
        k = len(MetadataCatalog.get(name).get("stuff_classes", [None] * NUM_CLASSES))
        if num_classes not in (None, k):
            raise ValueError(f"build_resumable_rcs_train_loader: datasets {names} have different numbers of classes")
        num_classes = k
        counts += load_or_compute_class_stats(name, d, compute_missing=compute_missing_stats)
        dicts += d
    return build_resumable_train_loader(
        dataset=RareClassDataset(dicts, num_classes),
        mapper=mapper,
        sampler=RareClassSampler(dicts, counts, temperature=temperature, min_pixels=min_pixels, seed=seed),
        total_batch_size=total_batch_size,
        num_workers=num_workers,
    )
