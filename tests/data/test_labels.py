import numpy as np
import pytest
from PIL import Image

from mfuser.data import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, IGNORE_LABEL, read_label
from mfuser.data.classes import (
    CITYSCAPES_ID_TO_TRAINID,
    MAPILLARY_V12_CLASSES,
    MAPILLARY_V12_ID_TO_TRAINID,
    SYNTHIA_ID_TO_TRAINID,
    apply_mapping,
)
from mfuser.data.labels import make_sem_seg_loading_fn, write_label

from .trees import blocks, save_gray, save_palette


def test_class_tables():
    assert len(CITYSCAPES_CLASSES) == 19 and len(set(CITYSCAPES_COLORS)) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert sorted(CITYSCAPES_ID_TO_TRAINID.values()) == list(range(19))
    assert sorted(SYNTHIA_ID_TO_TRAINID.values()) == list(range(19))
    assert set(MAPILLARY_V12_ID_TO_TRAINID.values()) == set(range(19))
    assert len(MAPILLARY_V12_CLASSES) == 66
    assert MAPILLARY_V12_CLASSES[13] == "Road" and MAPILLARY_V12_CLASSES[52] == "Bicycle"
    raw = np.array([[7, 33, 0, 255], [26, 1, 34, 8]], np.uint16)
    np.testing.assert_array_equal(apply_mapping(raw, CITYSCAPES_ID_TO_TRAINID), [[0, 18, 255, 255], [13, 255, 255, 1]])


def test_trainid_and_palette_indices(tmp_path):
    lab = blocks(8, 40, list(range(19)) + [255])
    save_gray(tmp_path / "g.png", lab)
    save_palette(tmp_path / "p.png", lab)
    for f, fmt in (("g.png", "trainid"), ("p.png", "trainid"), ("p.png", "palette")):
        out = read_label(str(tmp_path / f), fmt)
        assert out.dtype == np.uint8 and out.shape == (8, 40)
        np.testing.assert_array_equal(out, lab)


def test_cityscapes_id_and_mapping(tmp_path):
    ids = blocks(6, 34, sorted(CITYSCAPES_ID_TO_TRAINID) + [0, 4, 34])
    save_gray(tmp_path / "ids.png", ids)
    out = read_label(str(tmp_path / "ids.png"), "cityscapes_id")
    expected = np.vectorize(lambda v: CITYSCAPES_ID_TO_TRAINID.get(v, 255))(ids)
    np.testing.assert_array_equal(out, expected)
    out2 = read_label(str(tmp_path / "ids.png"), {7: 3, "26": 1})
    np.testing.assert_array_equal(out2, np.where(ids == 7, 3, np.where(ids == 26, 1, 255)))


def test_sixteen_bit_mapping(tmp_path):
    raw = np.array([[1000, 7], [3, 65535]], np.uint16)
    Image.fromarray(raw).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_label(str(tmp_path / "x.png"), {1000: 5, 3: 2}), [[5, 255], [2, 255]])


def test_rgb_colour_coded(tmp_path):
    lab = blocks(5, 40, list(range(19)) + [255])
    colors = np.array(list(CITYSCAPES_COLORS) + [(0, 0, 0)], np.uint8)
    Image.fromarray(colors[np.where(lab == 255, 19, lab)]).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_label(str(tmp_path / "c.png"), "palette"), lab)
    rgb = colors[np.where(lab == 255, 19, lab)].copy()
    rgb[0, 0] = (111, 74, 0)  # a Cityscapes void colour: not one of the 19
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad\.png.*\(111, 74, 0\)"):
        read_label(str(tmp_path / "bad.png"), "palette")
    with pytest.raises(ValueError, match="label_format='palette'"):
        read_label(str(tmp_path / "c.png"), "trainid")


def test_values_out_of_range_named(tmp_path):
    save_gray(tmp_path / "oops.png", np.array([[0, 19], [200, 255]]))
    with pytest.raises(ValueError, match=r"oops\.png.*\[19, 200\]"):
        read_label(str(tmp_path / "oops.png"))
    assert read_label(str(tmp_path / "oops.png"), num_classes=201).max() == 255


def test_corrupt_missing_and_bad_format(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        read_label(str(tmp_path / "broken.png"))
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        read_label(str(tmp_path / "nothere.png"))
    save_gray(tmp_path / "g.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="label_format"):
        read_label(str(tmp_path / "g.png"), "labelids")
    with pytest.raises(ValueError, match="label_format='trainid'"):
        read_label(str(tmp_path / "g.png"), "palette")


def test_loading_fn_and_atomic_write(tmp_path):
    lab = np.array([[0, 18], [255, 3]], np.uint8)
    write_label(lab, str(tmp_path / "sub" / "w.png"))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["w.png"]  # no temp file left behind
    fn = make_sem_seg_loading_fn("trainid")
    out = fn(str(tmp_path / "sub" / "w.png"), dtype=int)
    assert out.dtype == np.dtype(int) and out.tolist() == [[0, 18], [255, 3]]
    assert IGNORE_LABEL == 255
    with pytest.raises(ValueError, match="uint8"):
        write_label(lab.astype(np.int32), str(tmp_path / "x.png"))


def test_atomic_write_interrupted(tmp_path):
    from mfuser.utils.io import atomic_write

    dst = tmp_path / "l.png"
    write_label(np.zeros((2, 2), np.uint8), str(dst))
    before = dst.read_bytes()

    def dies(tmp):
        with open(tmp, "wb") as f:
            f.write(b"\x89PNG half-writ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(dst), dies, suffix=".png")
    assert dst.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["l.png"]
