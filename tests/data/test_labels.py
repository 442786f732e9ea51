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
from mfuser.data.labels import (
    CITYSCAPES_ID_VALUES,
    CITYSCAPES_LABEL_ID_NAMES,
    MAPILLARY_V12_ID_VALUES,
    LabelError,
    make_sem_seg_loading_fn,
    trainid_values,
    valid_values,
    write_label,
)

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
    ids = blocks(6, 34, sorted(CITYSCAPES_ID_TO_TRAINID) + [0, 4, 30])  # 0, 4, 30: in the table, not evaluated
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


def test_cityscapes_id_table_matches_the_trainid_mapping():
    assert len(CITYSCAPES_LABEL_ID_NAMES) == 34 and CITYSCAPES_ID_VALUES.count == 34
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        assert CITYSCAPES_LABEL_ID_NAMES[label_id] == CITYSCAPES_CLASSES[train_id]
    assert valid_values("cityscapes_id") is CITYSCAPES_ID_VALUES
    assert valid_values("mapillary_v12") is MAPILLARY_V12_ID_VALUES and MAPILLARY_V12_ID_VALUES.count == 66
    assert valid_values("trainid", 3) == trainid_values(3) and 255 in trainid_values(3) and 3 not in trainid_values(3)
    assert valid_values({1: 2}) is None


def test_valid_values_invalid_finds_every_bad_value():
    tv = trainid_values(19)
    assert tv.invalid(np.array([[0, 18], [255, 3]], np.uint8)) == []
    assert tv.invalid(np.array([[0, 19], [254, 255]], np.uint8)) == [19, 254]
    assert tv.invalid(np.array([[-1, 0], [300, 255]], np.int32)) == [-1, 300]
    assert tv.invalid(np.zeros((0, 4), np.uint8)) == []
    assert CITYSCAPES_ID_VALUES.invalid(np.array([[33, 34], [255, 0]], np.uint16)) == [34, 255]


def test_cityscapes_ids_outside_the_table_are_an_error(tmp_path):
    ids = blocks(6, 34, sorted(CITYSCAPES_ID_TO_TRAINID) + [40])
    save_gray(tmp_path / "ids.png", ids)
    with pytest.raises(LabelError, match=r"ids\.png \(image .*img\.png\) holds values \[40\].*label ids 0\.\.33"):
        read_label(str(tmp_path / "ids.png"), "cityscapes_id", image_file=str(tmp_path / "img.png"))
    # GTA5 labels are palette PNGs whose indices are the ids
    save_palette(tmp_path / "gta.png", blocks(6, 34, sorted(CITYSCAPES_ID_TO_TRAINID) + [0, 33]))
    out = read_label(str(tmp_path / "gta.png"), "cityscapes_id")
    assert set(np.unique(out).tolist()) == set(range(19)) | {255}


def test_mapillary_v12_format(tmp_path):
    ids = blocks(4, 66, range(66))
    save_palette(tmp_path / "m.png", ids)
    expected = np.vectorize(lambda v: MAPILLARY_V12_ID_TO_TRAINID.get(v, 255))(ids)
    np.testing.assert_array_equal(read_label(str(tmp_path / "m.png"), "mapillary_v12"), expected)
    save_palette(tmp_path / "v2.png", blocks(4, 10, [0, 66, 123]))  # v2.0 ids
    with pytest.raises(LabelError, match=r"v2\.png holds values \[66, 123\].*v1\.2 class ids 0\.\.65"):
        read_label(str(tmp_path / "v2.png"), "mapillary_v12")


@pytest.mark.parametrize(
    "shape, why",
    [((32, 24), "height and width are swapped"), ((16, 48), "same pixel count"), ((24, 31), "expected a label")],
)
def test_label_must_have_the_image_height_and_width(tmp_path, shape, why):
    save_gray(tmp_path / "lab.png", np.zeros(shape))
    with pytest.raises(LabelError, match=rf"lab\.png is {shape[1]}x{shape[0]} but image .*im\.png is 32x24.*{why}"):
        read_label(str(tmp_path / "lab.png"), image_file=str(tmp_path / "im.png"), image_size=(24, 32))
    assert read_label(str(tmp_path / "lab.png"), image_size=shape).shape == shape


def test_values_error_names_label_and_image(tmp_path):
    save_gray(tmp_path / "lab.png", np.array([[0, 77], [1, 255]]))
    with pytest.raises(LabelError, match=r"lab\.png \(image .*im\.png\) holds values \[77\].*trainIds 0\.\.2 and ig"):
        read_label(str(tmp_path / "lab.png"), num_classes=3, image_file=str(tmp_path / "im.png"))
