import itertools
import os
from collections import Counter
from unittest import mock

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader

from mfuser.data import (
    MFuserSemanticDatasetMapper,
    RareClassDataset,
    RareClassSampler,
    build_train_augmentations,
    load_or_compute_class_stats,
    register_target_domain,
)
from mfuser.data.build import build_resumable_rcs_train_loader
from mfuser.data.classes import NUM_CLASSES
from mfuser.data.rcs_stats import load_class_stats, save_class_stats
from mfuser.data.samplers import (
    ResumableSampler,
    compute_class_stats,
    find_resumable_sampler,
    rcs_class_probabilities,
)

from .trees import save_gray, save_rgb

# 4 images x 3 classes: class 2 is rare (only image 3 has enough pixels of it)
COUNTS = [[5000, 4000, 0], [9000, 0, 10], [8000, 3500, 0], [100, 0, 3200]]
DICTS = [{"file_name": f"{i}.png", "sem_seg_file_name": f"{i}_l.png"} for i in range(4)]


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_class_probabilities():
    p = rcs_class_probabilities(COUNTS, temperature=100.0)
    assert p.shape == (3,) and abs(p.sum() - 1) < 1e-12
    assert p[2] > p[1] > p[0]  # rarer classes more likely
    assert np.allclose(p, 1 / 3, atol=0.002)  # T = 100: almost uniform
    sharp = rcs_class_probabilities(COUNTS, temperature=0.01)
    assert sharp[2] > 0.99
    assert rcs_class_probabilities([[10, 0, 5]], 100.0)[1] == 0  # absent class never drawn


def test_sampler_determinism_ranks_and_eligibility():
    s1 = RareClassSampler(DICTS, COUNTS, seed=7, min_pixels=3000)
    s2 = RareClassSampler(DICTS, COUNTS, seed=7, min_pixels=3000)
    s3 = RareClassSampler(DICTS, COUNTS, seed=8, min_pixels=3000)
    a, b, c = take(s1, 300), take(s2, 300), take(s3, 300)
    assert a == b and a != c
    n = len(DICTS)
    pairs = [(i % n, i // n - 1) for i in a]
    assert all(cls >= 0 for _, cls in pairs)
    eligible = {0: {0, 1, 2}, 1: {0, 2}, 2: {3}}  # > 3000 pixels of the class
    assert all(img in eligible[cls] for img, cls in pairs)
    freq = Counter(cls for _, cls in pairs)
    assert all(80 <= freq[k] <= 120 for k in range(3)), freq
    # ranks take interleaved elements of the same stream
    with mock.patch("detectron2.utils.comm.get_world_size", return_value=2):
        for rank in (0, 1):
            with mock.patch("detectron2.utils.comm.get_rank", return_value=rank):
                r = RareClassSampler(DICTS, COUNTS, seed=7)
                assert take(r, 50) == a[rank::2][:50]


def test_sampler_bad_inputs(caplog):
    with pytest.raises(ValueError, match="3 class-count rows for 4"):
        RareClassSampler(DICTS, COUNTS[:3], seed=0)
    with pytest.raises(ValueError, match="min_pixels=10000"):
        RareClassSampler(DICTS, COUNTS, seed=0, min_pixels=10000)
    s = RareClassSampler(DICTS, COUNTS, seed=0, min_pixels=4500)  # classes 1, 2 never reach it
    assert s.classes == [0]


def test_dataset_decoding():
    ds = RareClassDataset(DICTS, num_classes=3)
    assert len(ds) == 16
    assert ds[2] == DICTS[2] and "rcs_class" not in ds[2]
    assert ds[3 + 4 * 3] == dict(DICTS[3], rcs_class=2)
    d = ds[1]
    d["file_name"] = "changed"
    assert ds[1]["file_name"] == "1.png"  # copies
    with pytest.raises(IndexError):
        ds[16]


def _tiny_domain(tmp_path, name):
    img_root, lab_root = tmp_path / "img", tmp_path / "lab"
    for i in range(3):
        lab = np.zeros((40, 40), np.uint8)
        lab[:, 20:] = 8
        if i == 2:
            lab[:16, :16] = 18  # rare: bicycle
        save_rgb(str(img_root / f"{i}.png"), 40, 40, seed=i)
        save_gray(str(lab_root / f"{i}_l.png"), lab)
    register_target_domain(name, str(img_root), str(lab_root), image_suffix=".png", label_suffix="_l.png")
    return DatasetCatalog.get(name)


def test_stats_file_roundtrip_and_missing(tmp_path):
    name = "test_rcs_domain"
    dicts = _tiny_domain(tmp_path, name)
    try:
        with pytest.raises(FileNotFoundError, match="compute_missing=True"):
            load_or_compute_class_stats(name, dicts)
        counts = load_or_compute_class_stats(name, dicts, compute_missing=True)
        assert counts[2][18] == 256 and counts[0][0] == 800 and counts[0][8] == 800 and len(counts[0]) == 19
        path = str(tmp_path / "lab" / "rcs_class_stats.json")
        save_class_stats(path, compute_class_stats(dicts[:2]), num_classes=NUM_CLASSES)
        assert load_class_stats(path)[os.path.abspath(dicts[0]["sem_seg_file_name"])][8] == 800
        with pytest.raises(ValueError, match="out of date"):
            load_or_compute_class_stats(name, dicts, stats_file=path)
        assert load_or_compute_class_stats(name, dicts, stats_file=path, compute_missing=True) == counts
        with open(path, "w") as f:
            f.write("{}")
        with pytest.raises(ValueError, match="not an mfuser rare-class statistics file"):
            load_or_compute_class_stats(name, dicts, stats_file=path)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_train_loader_integration(tmp_path):
    name = "test_rcs_loader"
    dicts = _tiny_domain(tmp_path, name)
    try:
        mapper = MFuserSemanticDatasetMapper(
            augmentations=build_train_augmentations((16, 16), ratio_range=None, cat_max_ratio=1.0, photometric=False),
            rcs_min_crop_pixels=10,
        )
        counts = load_or_compute_class_stats(name, dicts, compute_missing=True)
        sampler = RareClassSampler(dicts, counts, min_pixels=50, seed=1, temperature=0.01)  # ~always bicycle
        loader = build_detection_train_loader(
            dataset=RareClassDataset(dicts), mapper=mapper, sampler=sampler, total_batch_size=2, num_workers=0
        )
        batches = list(itertools.islice(iter(loader), 6))
        assert all(len(b) == 2 and b[0]["image"].shape == (3, 16, 16) for b in batches)
        # a random 16x16 crop holds > 10 bicycle pixels with probability ~0.3; redrawn up to 10 times: ~0.98
        samples = [x for b in batches for x in b]
        assert all(x["file_name"].endswith("2.png") for x in samples)
        assert sum(int((x["sem_seg"] == 18).sum() > 10) for x in samples) >= 10
        loader2 = build_resumable_rcs_train_loader(
            names=[name], mapper=mapper, total_batch_size=2, min_pixels=50, seed=1, compute_missing_stats=True
        )
        b2 = next(iter(loader2))
        assert len(b2) == 2 and b2[0]["sem_seg"].shape == (16, 16)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_rcs_train_loader_is_resumable(tmp_path, num_workers):
    """The config's loader: batch i is chunk i of the rare-class stream, so skipping indices resumes it."""
    name = "test_rcs_resume"
    _tiny_domain(tmp_path, name)
    try:
        mapper = MFuserSemanticDatasetMapper(
            augmentations=build_train_augmentations((16, 16), ratio_range=None, cat_max_ratio=1.0, photometric=False)
        )

        def batches(skip, n=4):
            loader = build_resumable_rcs_train_loader(
                names=name, mapper=mapper, total_batch_size=2, min_pixels=50, seed=3, compute_missing_stats=True,
                num_workers=num_workers,
            )
            resumable = find_resumable_sampler(loader)
            assert isinstance(resumable, ResumableSampler) and isinstance(resumable.sampler, RareClassSampler)
            resumable.set_skip(skip)
            stream = take(resumable.sampler, 2 * (n + skip // 2))
            files = [[os.path.basename(x["file_name"]) for x in b] for b in itertools.islice(iter(loader), n)]
            return files, stream

        full, stream = batches(0)
        n = len(DatasetCatalog.get(name))
        assert full == [[f"{i % n}.png" for i in stream[2 * k: 2 * k + 2]] for k in range(4)]  # stream order
        assert len({f for b in full for f in b}) > 1  # the stream mixes images: the comparison can fail
        resumed, _ = batches(2 * 2)  # resume at iteration 2, 2 images per batch
        assert resumed[:2] == full[2:4]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ------------------------------------------------------------------ augmentation seeded by stream position
def test_position_tags_count_skipped_elements():
    from mfuser.data.samplers import ResumableSampler

    stream = list(itertools.islice(iter(ResumableSampler([5, 1, 4, 2, 3], tag_positions=10)), 5))
    assert stream == [5, 11, 24, 32, 43]
    resumed = ResumableSampler([5, 1, 4, 2, 3], tag_positions=10)
    resumed.set_skip(3)
    assert list(resumed) == [32, 43]


def test_position_seeded_augmentation_depends_on_position_only():
    import random

    import numpy as np

    from mfuser.data.samplers import PositionSeededDataset

    def mapper(record):
        return (record["i"], float(np.random.rand()), random.random(), float(torch.rand(1)))

    ds = PositionSeededDataset([{"i": 0}, {"i": 1}], mapper, seed=7)
    a = [ds[code] for code in (0, 3, 5)]  # positions 0, 1, 2
    np.random.seed(123)  # whatever the worker did before must not matter
    b = [ds[5], ds[3], ds[0]][::-1]
    assert a == b
    assert a[0][1:] != ds[2][1:]  # the same image at another position gets other random parameters
    assert PositionSeededDataset([{"i": 0}], mapper, seed=8)[0][1:] != ds[0][1:]  # and another seed too
    state = np.random.get_state()[1].copy()
    ds[0]
    assert (np.random.get_state()[1] == state).all()  # the caller's generators are left as they were
