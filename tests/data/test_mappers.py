import numpy as np
import pytest
import torch
from detectron2.data import transforms as T

from mfuser.data import MFuserSemanticDatasetMapper, MFuserTestDatasetMapper, build_train_augmentations
from mfuser.data.transforms import (
    IMAGE_PAD_RGB,
    PadToSize,
    PerChannelPadTransform,
    PhotoMetricDistortion,
    PhotoMetricDistortionTransform,
    ResizeByRatio,
    ResizeKeepRatio,
    keep_ratio_fit,
)

from .trees import save_gray, save_rgb


def _record(tmp_path, h, w, label):
    img, lab = str(tmp_path / "img.png"), str(tmp_path / "lab.png")
    save_rgb(img, h, w, seed=1)
    save_gray(lab, label)
    return {"file_name": img, "sem_seg_file_name": lab, "height": h, "width": w}


def test_build_train_augmentations_order():
    augs = build_train_augmentations()
    assert [type(a) for a in augs] == [
        ResizeByRatio,
        T.RandomCrop_CategoryAreaConstraint,
        T.RandomFlip,
        PhotoMetricDistortion,
        PadToSize,
    ]
    assert augs[1].crop_aug.crop_size == (512, 512) and augs[1].single_category_max_area == 0.75
    assert augs[1].ignored_category == 255 and augs[0].ratio_range == (0.5, 2.0)
    assert len(build_train_augmentations(flip=False, photometric=False)) == 3


def test_crop_size_padding_and_determinism(tmp_path):
    lab = np.tile(np.arange(40) % 19, (30, 1))
    rec = _record(tmp_path, 30, 40, lab)
    mapper = MFuserSemanticDatasetMapper(
        augmentations=build_train_augmentations(crop_size=(64, 48), ratio_range=(1.0, 1.0))
    )
    np.random.seed(0)
    out = mapper(rec)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 64, 48)
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (64, 48)
    assert (out["height"], out["width"]) == (64, 48)
    seg = out["sem_seg"]
    assert (seg[30:] == 255).all() and (seg[:, 40:] == 255).all()  # padded with ignore
    assert (seg[:30, :40] != 255).all()
    fill = torch.tensor([123, 117, 104], dtype=torch.uint8)[:, None, None]  # round(255 * OpenAI-CLIP mean)
    assert (out["image"][:, 30:] == fill).all() and (out["image"][:, :, 40:] == fill).all()
    # the same seed gives the same sample; another seed a different one
    np.random.seed(0)
    again = mapper(rec)
    assert torch.equal(again["image"], out["image"]) and torch.equal(again["sem_seg"], seg)
    outs = []
    for s in range(4):
        np.random.seed(100 + s)
        outs.append(mapper(rec)["image"])
    assert any(not torch.equal(o, out["image"]) for o in outs)


def test_image_pad_colour():
    import open_clip

    assert IMAGE_PAD_RGB == tuple(255.0 * m for m in open_clip.constants.OPENAI_DATASET_MEAN)
    image = np.full((2, 3, 3), 7, np.uint8)
    out = PadToSize((4, 5)).get_transform(image).apply_image(image)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and (out[:2, :3] == 7).all()
    assert out[3, 4].tolist() == [123, 117, 104] and out[0, 4].tolist() == [123, 117, 104]
    bgr = build_train_augmentations((4, 5), ratio_range=None, cat_max_ratio=1.0, flip=False, photometric=False,
                                    image_format="BGR")[-1]
    assert bgr.get_transform(image).apply_image(image)[3, 4].tolist() == [104, 117, 123]
    pad = PerChannelPadTransform(0, 0, 1, 1, pad_value=(0.5, 1.5, 2.0))
    assert pad.apply_image(np.zeros((1, 1, 3), np.float32))[1, 1].tolist() == [0.5, 1.5, 2.0]  # float: exact
    assert pad.apply_segmentation(np.zeros((1, 1), np.uint8)).tolist() == [[0, 0], [0, 0]]  # default label fill
    assert PadToSize((2, 2)).get_transform(np.zeros((1, 1), np.uint8)).apply_segmentation(
        np.zeros((1, 1), np.uint8))[1, 1] == 255
    with pytest.raises(ValueError, match="pad_value"):
        pad.apply_image(np.zeros((1, 1, 4), np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        build_train_augmentations(image_format="L")


def test_resize_ratio_of_native_size(tmp_path):
    rec = _record(tmp_path, 20, 30, np.zeros((20, 30)))
    aug = ResizeByRatio((0.5, 2.0))
    sizes = set()
    for s in range(20):
        np.random.seed(s)
        tfm = aug.get_transform(np.zeros((20, 30, 3), np.uint8))
        assert 10 <= tfm.new_h <= 40 and abs(tfm.new_w / tfm.new_h - 1.5) < 0.1
        sizes.add(tfm.new_h)
    assert len(sizes) > 5
    assert rec["height"] == 20


def test_cat_max_ratio_honoured(tmp_path):
    # road | car; a 32x32 crop is accepted only if no class exceeds 75% of its labelled pixels, which holds
    # for 15 of the 33 crop positions: 10 tries almost always find one, a single random crop rarely does
    lab = np.zeros((32, 64), np.uint8)
    lab[:, 40:] = 13
    rec = _record(tmp_path, 32, 64, lab)
    crop = (32, 32)
    constrained = MFuserSemanticDatasetMapper(
        augmentations=build_train_augmentations(crop, ratio_range=None, flip=False, photometric=False)
    )
    free = MFuserSemanticDatasetMapper(
        augmentations=build_train_augmentations(
            crop, ratio_range=None, cat_max_ratio=1.0, flip=False, photometric=False
        )
    )
    ok_c = ok_f = 0
    for s in range(30):
        for mapper in (constrained, free):
            np.random.seed(s)
            seg = mapper(rec)["sem_seg"].numpy()
            cnt = np.bincount(seg[seg != 255].ravel())
            good = len(np.nonzero(cnt)[0]) > 1 and cnt.max() < 0.75 * cnt.sum()
            if mapper is constrained:
                ok_c += good
            else:
                ok_f += good
    assert ok_c >= 29 and ok_f <= 20, (ok_c, ok_f)


def test_photometric_distortion():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ident = PhotoMetricDistortionTransform(None, None, None, None, True)
    np.testing.assert_array_equal(ident.apply_image(img), img)
    bright = PhotoMetricDistortionTransform(20.0, None, None, None, True).apply_image(img)
    np.testing.assert_array_equal(bright, np.clip(img.astype(int) + 20, 0, 255))
    gray = np.full((4, 4, 3), 100, np.uint8)  # hue/saturation leave gray unchanged
    np.testing.assert_array_equal(PhotoMetricDistortionTransform(None, None, 1.5, 10, True).apply_image(gray), gray)
    seg = np.arange(16).reshape(4, 4)
    assert PhotoMetricDistortionTransform(5.0, 1.2, 1.2, 3, False).apply_segmentation(seg) is seg
    seen_none = seen_val = False
    for s in range(20):
        np.random.seed(s)
        t = PhotoMetricDistortion().get_transform(img)
        if t.hue is None:
            seen_none = True
        else:
            seen_val = True
            assert -18 <= t.hue < 18
        assert t.brightness is None or -32 <= t.brightness <= 32
        assert t.contrast is None or 0.5 <= t.contrast <= 1.5
    assert seen_none and seen_val


def test_decoded_cache_gives_the_same_samples_without_reading_again(tmp_path):
    lab = np.tile(np.arange(40) % 19, (30, 1))
    rec = _record(tmp_path, 30, 40, lab)
    augs = build_train_augmentations(crop_size=(24, 24), ratio_range=(0.5, 1.5))
    plain = MFuserSemanticDatasetMapper(augmentations=augs)
    cached = MFuserSemanticDatasetMapper(augmentations=augs, decoded_cache_mb=1)
    expected = []
    for s in range(3):
        np.random.seed(s)
        expected.append(plain(rec))
    for s in range(3):
        np.random.seed(s)
        got = cached(rec)
        assert torch.equal(got["image"], expected[s]["image"]) and torch.equal(got["sem_seg"], expected[s]["sem_seg"])
        if s == 0:  # decoded once: later samples come from memory
            (tmp_path / "img.png").unlink()
            (tmp_path / "lab.png").unlink()
    image, label = next(iter(cached._cache.values()))
    assert cached._cache_used == image.nbytes + label.nbytes == 30 * 40 * 3 + 30 * 40
    # cached arrays are read-only: an augmentation writing into its input fails instead of changing later samples
    assert not image.flags.writeable and not label.flags.writeable

    class Zero(T.Transform):
        def apply_image(self, img):
            img[:] = 0
            return img

        def apply_coords(self, coords):
            return coords

    writer = MFuserSemanticDatasetMapper(augmentations=[T.RandomApply(Zero(), prob=1.0)], decoded_cache_mb=1)
    writer._cache = cached._cache
    with pytest.raises(ValueError, match="read-only"):
        writer(rec)


def test_decoded_cache_budget_and_bad_size(tmp_path):
    rec = _record(tmp_path, 30, 40, np.zeros((30, 40)))
    small = MFuserSemanticDatasetMapper(augmentations=[], decoded_cache_mb=4000 / 2**20)  # under one 4800-byte pair
    small(rec)
    assert small._cache == {} and small._cache_used == 0
    (tmp_path / "img.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img\.png"):  # nothing cached: read again
        small(rec)
    with pytest.raises(ValueError, match="decoded_cache_mb must be >= 0"):
        MFuserSemanticDatasetMapper(augmentations=[], decoded_cache_mb=-1)


def test_rcs_class_redraw(tmp_path):
    # class 7 only in a small corner: with rcs_class=7 the crop is redrawn until it holds enough of it
    lab = np.zeros((64, 64), np.uint8)
    lab[:, 32:] = 2
    lab[:12, :12] = 7
    rec = _record(tmp_path, 64, 64, lab)
    augs = build_train_augmentations((16, 16), ratio_range=None, cat_max_ratio=1.0, photometric=False)
    mapper = MFuserSemanticDatasetMapper(augmentations=augs, rcs_min_crop_pixels=20, rcs_max_redraws=10)
    hits_rcs = hits_plain = 0
    for s in range(20):
        np.random.seed(s)
        hits_rcs += int((mapper(dict(rec, rcs_class=7))["sem_seg"] == 7).sum() > 20)
        np.random.seed(s)
        hits_plain += int((mapper(rec)["sem_seg"] == 7).sum() > 20)
    assert hits_rcs > hits_plain + 5, (hits_rcs, hits_plain)


def test_mapper_bad_inputs(tmp_path):
    mapper = MFuserSemanticDatasetMapper(augmentations=[])
    rec = _record(tmp_path, 10, 12, np.zeros((10, 12)))
    save_gray(str(tmp_path / "big.png"), np.zeros((11, 12)))
    with pytest.raises(ValueError, match=r"big\.png is 12x11 but image .*img\.png is 12x10"):
        mapper(dict(rec, sem_seg_file_name=str(tmp_path / "big.png")))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png"):
        mapper(dict(rec, file_name=str(tmp_path / "bad.png")))
    save_gray(str(tmp_path / "oob.png"), np.full((10, 12), 30))
    with pytest.raises(ValueError, match=r"oob\.png.*\[30\]"):
        mapper(dict(rec, sem_seg_file_name=str(tmp_path / "oob.png")))
    with pytest.raises(ValueError, match="label_format"):
        MFuserSemanticDatasetMapper(augmentations=[], label_format="nope")


def test_mapper_checks_label_against_image_and_format(tmp_path):
    """Swapped height/width and values outside the format's set: one LabelError naming label and image."""
    from mfuser.data.labels import LabelError

    mapper = MFuserSemanticDatasetMapper(augmentations=[])
    rec = _record(tmp_path, 10, 12, np.zeros((10, 12)))
    save_gray(str(tmp_path / "swapped.png"), np.zeros((12, 10)))
    with pytest.raises(LabelError, match=r"swapped\.png is 10x12 but image .*img\.png is 12x10.*swapped"):
        mapper(dict(rec, sem_seg_file_name=str(tmp_path / "swapped.png")))
    save_gray(str(tmp_path / "v77.png"), np.full((10, 12), 77))
    with pytest.raises(LabelError, match=r"v77\.png \(image .*img\.png\) holds values \[77\]"):
        mapper(dict(rec, sem_seg_file_name=str(tmp_path / "v77.png")))
    save_gray(str(tmp_path / "ids.png"), np.full((10, 12), 40))  # not a Cityscapes id: an error, not ignore
    ids_mapper = MFuserSemanticDatasetMapper(augmentations=[], label_format="cityscapes_id")
    with pytest.raises(LabelError, match=r"ids\.png \(image .*img\.png\) holds values \[40\]"):
        ids_mapper(dict(rec, sem_seg_file_name=str(tmp_path / "ids.png")))
    save_gray(str(tmp_path / "ids.png"), np.full((10, 12), 26))
    assert (ids_mapper(dict(rec, sem_seg_file_name=str(tmp_path / "ids.png")))["sem_seg"] == 13).all()  # car


def test_test_mapper_resize(tmp_path):
    rec = _record(tmp_path, 20, 40, np.zeros((20, 40)))
    out = MFuserTestDatasetMapper()(rec)
    assert out["image"].shape == (3, 20, 40) and (out["height"], out["width"]) == (20, 40)
    out = MFuserTestDatasetMapper(resize_to=(80, 30))(rec)  # min(80/40, 30/20) = 1.5
    assert out["image"].shape == (3, 30, 60) and (out["height"], out["width"]) == (20, 40)
    assert out["file_name"] == rec["file_name"]
    with pytest.raises(ValueError, match="resize_to"):
        MFuserTestDatasetMapper(resize_to=(0, 10))


def test_keep_ratio_fit_and_resize():
    assert keep_ratio_fit(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert keep_ratio_fit(720, 1280, (2048, 1024)) == (1024, 1820)
    assert keep_ratio_fit(1080, 1920, (1280, 720)) == (720, 1280)
    assert keep_ratio_fit(1080, 1920, (720, 1280)) == (720, 1280)  # (long, short) in either order
    assert keep_ratio_fit(30, 40, None) == (30, 40)
    image = np.zeros((30, 40, 3), np.uint8)
    assert ResizeKeepRatio((10, 8)).get_transform(image).apply_image(image).shape == (8, 10, 3)  # x0.25: 7.5 -> 8
    assert isinstance(ResizeKeepRatio(None).get_transform(image), T.NoOpTransform)
    assert isinstance(ResizeKeepRatio((40, 30)).get_transform(image), T.NoOpTransform)
    with pytest.raises(ValueError, match="resize_to"):
        ResizeKeepRatio((10,))


def test_mapper_from_yacs_config():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("cityscapes_train",)
    cfg.INPUT.FORMAT = "RGB"
    mapper = MFuserSemanticDatasetMapper(cfg, is_train=True)
    augs = mapper.augmentations.augs
    assert isinstance(augs[1], T.RandomCrop_CategoryAreaConstraint) and augs[1].crop_aug.crop_size == (512, 512)
    assert mapper.ignore_label == 255 and mapper.label_format == "trainid" and mapper.num_classes == 19
