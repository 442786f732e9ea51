"""Train-loader builders for LazyConfig files: detectron2's ``build_detection_train_loader`` with a resumable
sampler (:class:`~mfuser.data.samplers.ResumableSampler`), per-sample augmentation seeded by stream position and
without aspect-ratio grouping, so that a resumed run sees the same batches, in the same order and with the same
augmentations, as an uninterrupted one (the samplers module explains why).
"""
from torch.utils.data import Sampler

from .samplers import (
    PositionSeededDataset,
    RareClassDataset,
    RareClassSampler,
    ResumableSampler,
    load_or_compute_class_stats,
)

__all__ = ["build_resumable_train_loader", "build_resumable_rcs_train_loader"]


def build_resumable_train_loader(
    *,
    dataset,
    mapper,
    total_batch_size: int,
    sampler=None,
    seed: int = 0,
    num_workers: int = 0,
):
    """``build_detection_train_loader`` whose sampler is a :class:`~mfuser.data.samplers.ResumableSampler`.

    Args:
        dataset (list[dict]): dataset dicts (e.g. ``get_detection_dataset_dicts(names)``).
        mapper (callable): dataset dict -> model input dict.
        total_batch_size (int): batch size over all ranks.
        sampler: ``None`` (detectron2 ``TrainingSampler(len(dataset), seed=seed)``), a ``Sampler``, or a
            callable ``sampler(dataset) -> Sampler`` (e.g. a rare-class sampler built from the dataset dicts).
            It must be deterministic given its seed.
        seed (int): seed of the default sampler, of each sample's augmentation (with its stream position, see
            :class:`~mfuser.data.samplers.PositionSeededDataset`) and of the DataLoader (the configs pass
            ``train.seed``).
        num_workers (int): data-loader workers (any value keeps batches and augmentations the same).
    """
    from detectron2.data import build_detection_train_loader
    from detectron2.data.common import DatasetFromList
    from detectron2.data.samplers import TrainingSampler

    if sampler is None:
        sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    elif not isinstance(sampler, Sampler) and callable(sampler):
        sampler = sampler(dataset)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler: expected None, a Sampler or a callable returning one, got {type(sampler)}")
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    return build_detection_train_loader(
        PositionSeededDataset(dataset, mapper, seed=seed),
        mapper=None,
        sampler=ResumableSampler(sampler, tag_positions=len(dataset)),
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=False,
        num_workers=num_workers,
        seed=seed,  # the DataLoader's own generator: creating its iterator draws nothing from torch's global one
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
    :func:`build_resumable_train_loader`: the sampler is wrapped in a ``ResumableSampler`` and
    ``aspect_ratio_grouping=False``. Why not detectron2's default grouping: it regroups indices by aspect ratio
    inside each worker, so batch i is no longer chunk i of the sampler stream and a resumed run could not
    find its place in it; the training crops all have one size, so grouping gains nothing.

    Args:
        names (str or list[str]): registered source datasets (same number of classes).
        mapper: e.g. ``MFuserSemanticDatasetMapper`` (redraws crops for ``"rcs_class"``).
        total_batch_size, num_workers: as in ``build_detection_train_loader``.
        temperature, min_pixels: rare-class sampling (reference: 100, 3000).
        seed: sampler seed (the configs pass ``train.seed``); fixed so that resuming is exact.
        compute_missing_stats: compute class statistics from the labels when the stats file is missing.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from .classes import NUM_CLASSES

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
