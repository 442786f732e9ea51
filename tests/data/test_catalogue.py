"""mfuser.data.catalogue: domains registered by name from JSON entries; bad entries named at import and at use."""
import importlib
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from mfuser.data import catalogue
from mfuser.data.datasets import DatasetNotFoundError
from mfuser.evaluation import check_registered


def write_domain(folder, n=2, hw=(64, 128), image_ext=".png", sub="city"):
    """``n`` random images + trainId labels (vertical class stripes, a top band of ignore) under
    ``folder/images/<sub>`` and ``folder/labels/<sub>``. Returns (images dir, labels dir, [label arrays])."""
    images, labels = os.path.join(folder, "images"), os.path.join(folder, "labels")
    os.makedirs(os.path.join(images, sub), exist_ok=True)
    os.makedirs(os.path.join(labels, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = []
    for i in range(n):
        label = np.broadcast_to(((np.arange(hw[1]) // 8 + i) % 19).astype(np.uint8), hw).copy()
        label[:4] = 255
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(
            os.path.join(images, sub, f"frame{i}{image_ext}"))
        Image.fromarray(label).save(os.path.join(labels, sub, f"frame{i}.png"))
        arrays.append(label)
    return images, labels, arrays


def write_entry_file(root, name, **fields):
    entry = {"mfuser_domain": 1, "image_suffix": ".png", "label_suffix": ".png", "label_format": "trainid", **fields}
    path = os.path.join(root, "mfuser_domains", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(entry if isinstance(entry, str) else json.dumps(entry))
    return path


@pytest.fixture()
def root(catalogue_root):
    """An empty ``$DETECTRON2_DATASETS`` (tests/conftest.py)."""
    return catalogue_root


def test_import_registers_every_entry(root, tmp_path):
    images, labels, _ = write_domain(os.path.join(root, "dashcam"))
    write_entry_file(root, "dashcam_val", images="dashcam/images", labels="dashcam/labels")  # relative to the root
    assert "dashcam_val" not in DatasetCatalog.list()
    import mfuser.data

    importlib.reload(mfuser.data)  # what a fresh process does at `import mfuser.data`
    assert "dashcam_val" in catalogue.catalogued_names()
    records = DatasetCatalog.get("dashcam_val")
    assert [os.path.relpath(r["file_name"], images) for r in records] == ["city/frame0.png", "city/frame1.png"]
    assert [os.path.relpath(r["sem_seg_file_name"], labels) for r in records] == ["city/frame0.png", "city/frame1.png"]
    meta = MetadataCatalog.get("dashcam_val")
    assert meta.label_format == "trainid" and len(meta.stuff_classes) == 19 and meta.origin.endswith("dashcam_val.json")
    check_registered(["dashcam_val"])
    # entries that left the catalogue are forgotten at the next scan
    os.remove(os.path.join(root, "mfuser_domains", "dashcam_val.json"))
    catalogue.register_catalogue()
    assert "dashcam_val" not in DatasetCatalog.list()


def test_bad_entries_are_skipped_with_a_warning_and_named_at_use(root, caplog):
    images, labels, _ = write_domain(os.path.join(root, "ok"))
    files = {
        "not_json": write_entry_file(root, "not_json"),
        "typo_key": write_entry_file(root, "typo_key", images=images, labels=labels, label_fromat="trainid"),
        "bad_format": write_entry_file(root, "bad_format", images=images, labels=labels, label_format="trainids"),
        "cityscapes_val": write_entry_file(root, "cityscapes_val", images=images, labels=labels),
    }
    with open(files["not_json"], "w") as f:
        f.write("{not json")
    with caplog.at_level(logging.WARNING, logger="mfuser.data.catalogue"):
        assert catalogue.register_catalogue() == []
    for name, path in files.items():
        assert any(path in r.getMessage() for r in caplog.records), name
        with pytest.raises(catalogue.CatalogueError) as info:
            check_registered([name])
        assert path in str(info.value) and f"dataset {name!r}" in str(info.value)
    for name, what in [("not_json", "not a readable JSON"), ("typo_key", "unknown key(s) ['label_fromat']"),
                       ("bad_format", "label_format: expected one of"), ("cityscapes_val", "built-in")]:
        with pytest.raises(KeyError, match=".*".join(map(re.escape, [name, what]))):
            check_registered([name])
    assert MetadataCatalog.get("cityscapes_val").image_root.endswith("cityscapes")  # the built-in is untouched


def test_a_folder_that_disappeared_is_named_with_its_entry_at_use(root):
    images, labels, _ = write_domain(os.path.join(root, "gone"))
    path = write_entry_file(root, "gone_val", images=images, labels=labels)
    assert catalogue.register_catalogue() == ["gone_val"]
    shutil.rmtree(images)
    with pytest.raises(catalogue.CatalogueError) as info:
        check_registered(["gone_val"])
    msg = str(info.value)
    assert path in msg and images in msg and "does not exist" in msg and "--remove gone_val" in msg
    with pytest.raises(DatasetNotFoundError, match=f"gone_val.*{path}.*{images}"):
        DatasetCatalog.get("gone_val")  # any other road to the data names the entry too


def test_unknown_names_get_close_names_among_the_projects_datasets_only(root):
    images, labels, _ = write_domain(os.path.join(root, "d"))
    write_entry_file(root, "dashcam_val", images=images, labels=labels)
    catalogue.register_catalogue()
    with pytest.raises(KeyError) as info:
        check_registered(["dashcam_vall", "cityscapes_vall"])
    msg = str(info.value.args[0])
    assert "Did you mean 'dashcam_val', 'cityscapes_val'" in msg
    assert "gta5_train" in msg and "dashcam_val" in msg and "tools/register_domain.py" in msg
    assert "coco" not in msg and "lvis" not in msg  # not detectron2's whole catalogue
    assert "coco_2017_val" in DatasetCatalog.list()


def test_scan_counts_pixels_and_names_bad_pairs(root, tmp_path):
    images, labels, arrays = write_domain(str(tmp_path / "d"), n=3)
    entry = catalogue.new_entry("scan_val", images, labels, image_suffix=".png", label_suffix=".png")
    summary = catalogue.scan_domain(entry)
    counts = np.bincount(np.concatenate([a.ravel() for a in arrays]), minlength=256)
    assert summary.num_pairs == 3
    assert summary.pixels.tolist() == [*counts[:19].tolist(), counts[255]]
    present = [sum(int((a == t).any()) for a in arrays) for t in [*range(19), 255]]
    assert summary.images.tolist() == present and present[0] == 1 and present[-1] == 3
    assert "(ignore)" in summary.table() and summary.absent_classes() == ["bicycle"]

    Image.fromarray(np.zeros((128, 64), np.uint8)).save(os.path.join(labels, "city", "frame1.png"))  # swapped
    Image.fromarray(np.full((64, 128), 40, np.uint8)).save(os.path.join(labels, "city", "frame2.png"))
    with pytest.raises(catalogue.CatalogueError) as info:
        catalogue.scan_domain(entry)
    msg = str(info.value)
    assert msg.startswith(f"dataset 'scan_val' (catalogue entry {entry.path})") and "2 of 3" in msg
    assert "frame1.png" in msg and "swapped" in msg and "frame2.png" in msg and "[40]" in msg
    os.remove(os.path.join(labels, "city", "frame0.png"))
    with pytest.raises(catalogue.CatalogueError, match=r"1 image\(s\) without a label \[city/frame0\].*--image-suffix"):
        catalogue.scan_domain(entry)


@pytest.mark.parametrize("name", ["", "9lives", "null", "True", "a b", "x/y", "a" * 101, "abc\n"])
def test_names_that_cannot_be_used_on_the_command_line_are_refused(name):
    with pytest.raises(ValueError, match="dataset name"):
        catalogue.check_name(name)
