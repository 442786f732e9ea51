import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from mfuser.data import (
    CITYSCAPES_CLASSES,
    DatasetNotFoundError,
    load_bdd100k,
    load_cityscapes,
    load_gta5,
    load_mapillary,
    load_synthia,
    read_label,
    register_all,
    register_target_domain,
)
from mfuser.data.prepare import cityscapes as prepare_cityscapes
from mfuser.data.prepare import gta5 as prepare_gta5
from mfuser.data.prepare import mapillary as prepare_mapillary
from mfuser.data.prepare import synthia as prepare_synthia

from .trees import (
    blocks,
    make_bdd100k,
    make_cityscapes,
    make_gta5,
    make_mapillary_raw,
    make_synthia,
    save_gray,
    save_rgb,
)

NAMES = [
    "gta5_train",
    "synthia_train",
    "cityscapes_train",
    "cityscapes_val",
    "bdd100k_train",
    "bdd100k_val",
    "mapillary_train",
    "mapillary_val",
]


@pytest.fixture
def restore_registration():
    yield
    register_all()  # back to the default root for other tests


def test_builtin_names_registered_on_import(tmp_path, restore_registration):
    for name in NAMES:
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == CITYSCAPES_CLASSES and len(meta.stuff_colors) == 19
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg" and meta.label_format == "trainid"
    assert register_all(str(tmp_path)) == register_all(str(tmp_path))  # idempotent
    # a missing root names the expected path and the script to run, never an empty dataset
    with pytest.raises(DatasetNotFoundError, match=rf"{tmp_path}/cityscapes/leftImg8bit/val.*prepare_cityscapes\.py"):
        DatasetCatalog.get("cityscapes_val")
    with pytest.raises(DatasetNotFoundError, match=r"gta/images.*prepare_gta5\.py"):
        DatasetCatalog.get("gta5_train")
    with pytest.raises(DatasetNotFoundError, match=r"synthia/RGB.*prepare_synthia\.py"):
        DatasetCatalog.get("synthia_train")
    with pytest.raises(DatasetNotFoundError, match=r"bdd100k/images/10k/val"):
        DatasetCatalog.get("bdd100k_val")
    with pytest.raises(DatasetNotFoundError, match=r"cityscapes_trainIdLabel/val/label.*prepare_mapillary\.py"):
        DatasetCatalog.get("mapillary_val")


def test_real_cityscapes_frame(shared_dir, tmp_path, restore_registration):
    """prepare_cityscapes on a copy without labelTrainIds: exact table, >= 99.7% agreement with the shipped file."""
    from .trees import copy_tree

    root = copy_tree(os.path.join(shared_dir, "data", "cityscapes_sample"), str(tmp_path / "cityscapes"))
    gt = os.path.join(root, "gtFine", "val", "frankfurt")
    shipped_path = os.path.join(gt, "frankfurt_000000_000294_gtFine_labelTrainIds.png")
    shipped = read_label(shipped_path)
    os.remove(shipped_path)
    assert prepare_cityscapes.main([root, "--workers", "1"]) == 0
    ours = read_label(shipped_path)
    ids = np.asarray(
        __import__("PIL.Image").Image.open(os.path.join(gt, "frankfurt_000000_000294_gtFine_labelIds.png"))
    )
    from mfuser.data.classes import CITYSCAPES_ID_TO_TRAINID

    table = np.full(256, 255, np.uint8)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        table[k] = v
    np.testing.assert_array_equal(ours, table[ids])  # the official table, exactly
    agree = (ours == shipped).mean()
    assert agree >= 0.997 and agree < 1.0, agree  # 77 boundary pixels were downscaled separately
    # the registered dataset loads it
    register_all(str(tmp_path))
    dicts = DatasetCatalog.get("cityscapes_val")
    assert len(dicts) == 1 and (dicts[0]["height"], dicts[0]["width"]) == (128, 256)
    assert dicts[0]["sem_seg_file_name"] == shipped_path
    from mfuser.data import MFuserSemanticDatasetMapper, build_train_augmentations

    mapper = MFuserSemanticDatasetMapper(augmentations=build_train_augmentations(crop_size=(96, 96)))
    np.random.seed(3)
    out = mapper(dicts[0])
    assert out["image"].shape == (3, 96, 96) and out["sem_seg"].shape == (96, 96)
    vals = set(out["sem_seg"].unique().tolist())
    assert vals <= set(range(19)) | {255} and len(vals - {255}) >= 2


def test_cityscapes_layout_and_unpaired(tmp_path):
    root = make_cityscapes(str(tmp_path / "cs"), train_ids=True)
    d = load_cityscapes(root, "train")
    assert len(d) == 2 and d[0]["file_name"].endswith("_leftImg8bit.png")
    assert os.path.basename(d[0]["sem_seg_file_name"]).replace("_gtFine_labelTrainIds", "_leftImg8bit") == (
        os.path.basename(d[0]["file_name"])
    )
    # an image without a label: listed, counted, error unless allowed
    save_rgb(os.path.join(root, "leftImg8bit", "train", "aachen", "aachen_000099_000019_leftImg8bit.png"), 32, 64)
    with pytest.raises(ValueError, match=r"1 image\(s\) without a label \[aachen/aachen_000099_000019\]"):
        load_cityscapes(root, "train")
    assert len(load_cityscapes(root, "train", allow_unpaired=True)) == 2
    # labels not converted yet: the error says which script to run
    root2 = make_cityscapes(str(tmp_path / "cs2"), splits=("val",))
    with pytest.raises(ValueError, match="prepare_cityscapes.py"):
        load_cityscapes(root2, "val")


def test_corrupt_image_named(tmp_path):
    root = make_cityscapes(str(tmp_path / "cs"), splits=("val",), n=1, train_ids=True)
    img = load_cityscapes(root, "val")[0]["file_name"]
    with open(img, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ValueError, match=rf"Cannot read image {img}"):
        load_cityscapes(root, "val")


def test_gta5_prepare_and_load(tmp_path, capsys):
    root = make_gta5(str(tmp_path / "gta"))
    with pytest.raises(ValueError, match="prepare_gta5.py"):
        load_gta5(root)
    prep = prepare_gta5
    assert prep.main([root, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 converted" in out and "00002.png is 42x26 but image" in out and "resized" in out
    d = load_gta5(root)
    assert [os.path.basename(r["sem_seg_file_name"]) for r in d] == [f"0000{i}_labelTrainIds.png" for i in (1, 2, 3)]
    for r in d:  # the mismatched label now has its image's size
        assert read_label(r["sem_seg_file_name"]).shape == (r["height"], r["width"]) == (24, 40)
    assert os.path.isfile(os.path.join(root, "rcs_class_stats.json"))
    # idempotent: second run skips everything
    assert prep.main([root, "--workers", "2"]) == 0
    assert "0 converted, 3 skipped" in capsys.readouterr().out
    assert not [f for f in os.listdir(os.path.join(root, "labels")) if f.startswith(".tmp-")]
    # a truncated / invalid existing output is not skipped but converted again
    with open(os.path.join(root, "labels", "00003_labelTrainIds.png"), "wb") as f:
        f.write(b"\x89PNG trunc")
    assert prep.main([root, "--workers", "1"]) == 0
    assert "1 converted, 2 skipped" in capsys.readouterr().out
    assert read_label(os.path.join(root, "labels", "00003_labelTrainIds.png")).shape == (24, 40)


def test_gta5_unpaired_and_corrupt_label(tmp_path, capsys):
    root = make_gta5(str(tmp_path / "gta"), mismatch=())
    save_gray(os.path.join(root, "labels", "00077.png"), np.zeros((24, 40)))
    prep = prepare_gta5
    assert prep.main([root, "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "label without image" in out and "00077.png" in out and "nothing converted" in out
    assert prep.main([root, "--workers", "1", "--allow-unpaired"]) == 0
    assert "1 unpaired file(s) left out" in capsys.readouterr().out
    with open(os.path.join(root, "labels", "00002.png"), "wb") as f:
        f.write(b"\x89PNG broken")
    os.remove(os.path.join(root, "labels", "00002_labelTrainIds.png"))
    assert prep.main([root, "--workers", "1", "--allow-unpaired"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "00002.png" in out and "NOT written" in out


@pytest.mark.parametrize("nested", [False, True])
def test_synthia_16bit_prepare_and_load(tmp_path, nested):
    from mfuser.data.classes import SYNTHIA_ID_TO_TRAINID

    root = make_synthia(str(tmp_path / "synthia"), nested=nested)
    assert prepare_synthia.main([root, "--workers", "1"]) == 0
    d = load_synthia(root)
    assert len(d) == 2
    import cv2

    for r in d:
        raw = cv2.imread(r["sem_seg_file_name"].replace("_labelTrainIds", ""), cv2.IMREAD_UNCHANGED)[..., 2]
        expected = np.vectorize(lambda v: SYNTHIA_ID_TO_TRAINID.get(int(v), 255))(raw)
        np.testing.assert_array_equal(read_label(r["sem_seg_file_name"]), expected)
        assert set(np.unique(expected)) == set(range(19)) | {255}


@pytest.mark.parametrize("layout,fmt", [("masks", "trainid"), ("colormaps", "palette"), ("rgb", "palette")])
def test_bdd100k_layouts(tmp_path, layout, fmt, restore_registration):
    root = str(tmp_path / "bdd100k")
    make_bdd100k(root, layout="colormaps" if layout == "rgb" else layout)
    if layout == "rgb":  # colour-coded RGB colormaps
        import shutil

        shutil.rmtree(os.path.join(root, "labels"))
        make_bdd100k(root, layout="rgb_colormaps")
        os.rename(
            os.path.join(root, "labels", "sem_seg", "rgb_colormaps"),
            os.path.join(root, "labels", "sem_seg", "colormaps"),
        )
    d = load_bdd100k(root, "val")
    assert len(d) == 2 and all(r["label_format"] == fmt for r in d)
    register_all(str(tmp_path))
    assert MetadataCatalog.get("bdd100k_val").label_format == fmt
    for r in d:
        lab = read_label(r["sem_seg_file_name"], fmt)
        assert set(np.unique(lab)) == set(range(19)) | {255}


def test_mapillary_prepare_layouts(tmp_path, restore_registration, capsys):
    from mfuser.data.classes import MAPILLARY_V12_ID_TO_TRAINID

    root = make_mapillary_raw(str(tmp_path / "mapillary"))
    with pytest.raises(DatasetNotFoundError):
        load_mapillary(root, "val")
    prep = prepare_mapillary
    assert prep.main([root, "--workers", "1", "--half"]) == 0
    assert "mapillary half val: 2 converted" in capsys.readouterr().out
    full = load_mapillary(root, "val")
    assert len(full) == 2 and "cityscapes_trainIdLabel/val/label" in full[0]["sem_seg_file_name"]
    assert full[0]["file_name"].endswith(".jpg") and (full[0]["height"], full[0]["width"]) == (16, 28)
    # palette indices (not colours) were mapped
    from PIL import Image

    src = os.path.join(root, "validation", "v1.2", "labels", os.path.basename(full[0]["sem_seg_file_name"]))
    raw = np.asarray(Image.open(src))
    expected = np.vectorize(lambda v: MAPILLARY_V12_ID_TO_TRAINID.get(int(v), 255))(raw)
    np.testing.assert_array_equal(read_label(full[0]["sem_seg_file_name"]), expected)
    half = load_mapillary(root, "val", half=True)
    assert len(half) == 2 and (half[0]["height"], half[0]["width"]) == (8, 14)
    assert read_label(half[0]["sem_seg_file_name"]).shape == (8, 14)
    assert len(load_mapillary(root, "train")) == 2
    register_all(str(tmp_path))
    assert len(DatasetCatalog.get("mapillary_val_half")) == 2 and len(DatasetCatalog.get("mapillary_train")) == 2


def test_mapillary_config_layout_and_custom_mapping(tmp_path):
    import json

    root = make_mapillary_raw(str(tmp_path / "m"), splits=("validation",), v12=False)
    with open(tmp_path / "map.json", "w") as f:
        json.dump({"13": 0}, f)
    assert (
        prepare_mapillary.main(
            [root, "--workers", "1", "--splits", "val", "--mapping", str(tmp_path / "map.json")]
        )
        == 0
    )
    lab = read_label(load_mapillary(root, "val")[0]["sem_seg_file_name"])
    assert set(np.unique(lab)) == {0, 255}
    # the published configs' layout: validation/labels/<name>_labelTrainIds.png
    root2 = str(tmp_path / "m2")
    for r in load_mapillary(root, "val"):
        name = os.path.basename(r["file_name"])[:-4]
        save_rgb(os.path.join(root2, "validation", "images", name + ".jpg"), 16, 28, fmt="JPEG")
        save_gray(os.path.join(root2, "validation", "labels", name + "_labelTrainIds.png"), blocks(16, 28, range(19)))
    assert len(load_mapillary(root2, "val")) == 2


def test_target_domain(tmp_path):
    img_root, lab_root = tmp_path / "rgb_anon" / "fog" / "val", tmp_path / "gt" / "fog" / "val"
    for seq in ("GOPR0475", "GOPR0476"):
        save_rgb(str(img_root / seq / f"{seq}_frame_000001_rgb_anon.png"), 12, 20)
        save_gray(str(lab_root / seq / f"{seq}_frame_000001_gt_labelTrainIds.png"), blocks(12, 20, range(19)))
    kw = dict(image_suffix="_rgb_anon.png", label_suffix="_gt_labelTrainIds.png")
    name = register_target_domain("test_fog_val", str(img_root), str(lab_root), **kw)
    assert name == "test_fog_val" and register_target_domain(name, str(img_root), str(lab_root), **kw) == name
    d = DatasetCatalog.get(name)
    assert len(d) == 2 and (d[0]["height"], d[0]["width"]) == (12, 20)
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == CITYSCAPES_CLASSES and meta.label_format == "trainid" and meta.ignore_label == 255
    with pytest.raises(ValueError, match=r"already registered.*replace=True \(overwrite=True to register_target_"):
        register_target_domain(name, str(img_root), str(lab_root), image_suffix=".png", label_suffix=".png")
    # the flags the message names do replace the registration
    from mfuser.data.datasets.register import register_semseg

    with pytest.raises(ValueError, match="already registered"):
        register_semseg(name, list, spec="other", label_format="trainid", image_root="a", sem_seg_root="b")
    register_semseg(name, list, spec="other", replace=True, label_format="trainid", image_root="a", sem_seg_root="b")
    assert MetadataCatalog.get(name).image_root == "a"
    register_target_domain(name, str(img_root), str(lab_root), overwrite=True, **kw)
    assert len(DatasetCatalog.get(name)) == 2
    # custom vocabulary and mapping
    n2 = register_target_domain(
        "test_fog_2cls", str(img_root), str(lab_root), label_format={0: 0, 1: 1}, classes=["a", "b"], **kw
    )
    assert MetadataCatalog.get(n2).stuff_classes == ["a", "b"] and len(MetadataCatalog.get(n2).stuff_colors) == 2
    # unpaired label: listed and counted
    save_gray(str(lab_root / "GOPR0476" / "GOPR0476_frame_000009_gt_labelTrainIds.png"), np.zeros((12, 20)))
    n3 = register_target_domain("test_fog_unpaired", str(img_root), str(lab_root), **kw)
    with pytest.raises(ValueError, match=r"1 label\(s\) without an image \[GOPR0476/GOPR0476_frame_000009\]"):
        DatasetCatalog.get(n3)
    n4 = register_target_domain("test_fog_missing", str(tmp_path / "nope"), str(lab_root), **kw)
    with pytest.raises(DatasetNotFoundError, match="nope"):
        DatasetCatalog.get(n4)
    with pytest.raises(ValueError, match="image_suffix"):
        register_target_domain("x", str(img_root), str(lab_root), image_suffix="", label_suffix=".png")
    with pytest.raises(ValueError, match="label_format"):
        register_target_domain("x", str(img_root), str(lab_root), label_format="rgb", **kw)
    for n in (name, n2, n3, n4):
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_prepare_scripts_help():
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT as REPO

    code = (
        "import runpy, sys\n"
        "for name in ('cityscapes', 'gta5', 'synthia', 'mapillary'):\n"
        "    sys.argv = [name, '--help']\n"
        "    try:\n"
        "        runpy.run_path(f'datasets/prepare_{name}.py', run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (name, e.code)\n"
        "    print('HELP-OK', name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("HELP-OK") == 4 and "--workers" in out.stdout and "--overwrite" in out.stdout
    # a missing root: one clear line, exit code 2
    bad = subprocess.run(
        [sys.executable, "datasets/prepare_gta5.py", "/nonexistent/gta"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "error: GTA5: expected the folder /nonexistent/gta/images" in bad.stderr
