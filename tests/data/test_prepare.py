"""The preparation scripts check each source label as the evaluator does (issue 16, deliverable 1): ids outside
the format's table are an error (not ignore), and a label must have exactly its image's height and width
(GTA5: resized to its image, except a label whose height and width are swapped)."""
import os

import numpy as np

from mfuser.data.prepare import cityscapes as prepare_cityscapes
from mfuser.data.prepare import gta5 as prepare_gta5
from mfuser.data.prepare import mapillary as prepare_mapillary

from .trees import CS_IDS, blocks, make_cityscapes, make_gta5, make_mapillary_raw, save_gray, save_palette


def _failed_line(out: str, name: str) -> str:
    lines = [ln for ln in out.splitlines() if "FAILED" in ln and name in ln]
    assert len(lines) == 1, out
    return lines[0]


def test_cityscapes_ids_outside_table_and_swapped_label(tmp_path, capsys):
    root = make_cityscapes(str(tmp_path / "cs"), splits=("val",), n=3, h=32, w=64)
    gt = os.path.join(root, "gtFine", "val", "frankfurt")
    save_gray(os.path.join(gt, "frankfurt_000001_000019_gtFine_labelIds.png"), blocks(32, 64, CS_IDS + [40]))
    save_gray(os.path.join(gt, "frankfurt_000002_000019_gtFine_labelIds.png"), blocks(64, 32, CS_IDS))  # H <-> W
    assert prepare_cityscapes.main([root, "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 converted, 0 skipped (already valid), 2 failed" in out
    line = _failed_line(out, "frankfurt_000001_000019_gtFine_labelIds.png")
    assert "holds values [40]" in line and "Cityscapes label ids 0..33" in line and "_leftImg8bit.png" in line
    line = _failed_line(out, "frankfurt_000002_000019_gtFine_labelIds.png")
    assert "is 32x64 but image" in line and "frankfurt_000002_000019_leftImg8bit.png is 64x32" in line
    assert "swapped" in line
    assert not os.path.exists(os.path.join(gt, "frankfurt_000001_000019_gtFine_labelTrainIds.png"))


def test_gta5_swapped_label_not_resized_and_bad_ids_refused(tmp_path, capsys):
    root = make_gta5(str(tmp_path / "gta"), n=3, h=24, w=40, mismatch=(1,))
    save_gray(os.path.join(root, "labels", "00003.png"), blocks(40, 24, CS_IDS))  # height and width swapped
    assert prepare_gta5.main([root, "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 converted" in out and "00002.png is 42x26 but image" in out and "resized" in out  # 2 px larger: resized
    line = _failed_line(out, "00003.png")
    assert "is 24x40 but image" in line and "images/00003.png is 40x24" in line and "swapped" in line
    save_palette(os.path.join(root, "labels", "00003.png"), blocks(24, 40, CS_IDS + [34]))  # GTA5: palette indices
    assert prepare_gta5.main([root, "--workers", "1"]) == 1
    assert "holds values [34]" in _failed_line(capsys.readouterr().out, "00003.png")


def test_mapillary_ids_outside_v12_and_label_of_another_size(tmp_path, capsys):
    root = make_mapillary_raw(str(tmp_path / "m"), splits=("validation",), n=3, h=16, w=28)
    labels = os.path.join(root, "validation", "v1.2", "labels")
    save_palette(os.path.join(labels, "v00001_vistas.png"), blocks(16, 28, [13, 66, 123]))  # v2.0 ids
    save_palette(os.path.join(labels, "v00002_vistas.png"), blocks(14, 32, range(66)))  # 448 px, like 16x28
    assert prepare_mapillary.main([root, "--workers", "1", "--splits", "val"]) == 1
    out = capsys.readouterr().out
    assert "1 converted, 0 skipped (already valid), 2 failed" in out
    line = _failed_line(out, "v00001_vistas.png")
    assert "holds values [66, 123]" in line and "v1.2 class ids 0..65" in line and "v00001_vistas.jpg" in line
    line = _failed_line(out, "v00002_vistas.png")
    assert "is 32x14 but image" in line and "v00002_vistas.jpg is 28x16" in line and "same pixel count" in line
    # a custom --mapping checks the ids against the v1.2 table too
    import json

    with open(tmp_path / "map.json", "w") as f:
        json.dump({"13": 0}, f)
    argv = [root, "--workers", "1", "--splits", "val", "--mapping", str(tmp_path / "map.json")]
    assert prepare_mapillary.main(argv) == 1
    assert "holds values [66, 123]" in _failed_line(capsys.readouterr().out, "v00001_vistas.png")


def test_half_resolution_copy_checks_label_against_image(tmp_path):
    from mfuser.data.prepare import resize_half

    from .trees import save_rgb

    save_rgb(str(tmp_path / "img.jpg"), 16, 28, fmt="JPEG")
    save_gray(str(tmp_path / "lab.png"), np.zeros((28, 16)))
    res = resize_half(str(tmp_path / "img.jpg"), str(tmp_path / "lab.png"), str(tmp_path / "h.jpg"),
                      str(tmp_path / "h.png"), False)
    assert res.status == "failed" and "lab.png is 16x28 but image" in res.note and "swapped" in res.note
    assert not os.path.exists(tmp_path / "h.jpg") and not os.path.exists(tmp_path / "h.png")
