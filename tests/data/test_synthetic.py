"""Synthetic street-scene domains: determinism, alignment, class coverage, layouts, resume / refuse, CLI."""

import dataclasses
import filecmp
import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from mfuser.data.classes import CITYSCAPES_CLASSES, IGNORE_LABEL, NUM_CLASSES
from mfuser.data.rcs_stats import load_class_stats
from mfuser.data.synthetic import (
    DOMAINS,
    RCS_STATS_FILENAME,
    STYLES,
    TARGET_DOMAINS,
    DomainStyle,
    domain_files,
    generate_all,
    generate_domain,
    render_scene,
)
from mfuser.data.synthetic.canvas import Camera
from mfuser.data.synthetic.cli import main as cli_main
from mfuser.evaluation.baselines import class_histogram

SMALL = (128, 64)
SKY, ROAD, VEG = (CITYSCAPES_CLASSES.index(n) for n in ("sky", "road", "vegetation"))


def _files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(out)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "data")
    roots = generate_all(root, num_source=4, num_target=3, size=SMALL, seed=3)
    return root, roots


# ------------------------------------------------------------------------------------------ render
def test_render_shapes_and_values():
    for d in DOMAINS:
        img, lab = render_scene(d, 0, size=(160, 96), seed=1)
        assert img.shape == (96, 160, 3) and img.dtype == np.uint8
        assert lab.shape == (96, 160) and lab.dtype == np.uint8
        vals = set(np.unique(lab).tolist())
        assert vals <= set(range(NUM_CLASSES)) | {IGNORE_LABEL}, vals
        assert (lab != IGNORE_LABEL).mean() > 0.7  # ignore only for the bonnet / roll border
        assert img.std() > 10  # not a blank image


def test_render_deterministic_per_seed():
    a = render_scene("target_bdd", 5, SMALL, seed=7)
    b = render_scene("target_bdd", 5, SMALL, seed=7)
    c = render_scene("target_bdd", 5, SMALL, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_domains_differ_in_appearance():
    """Same index and seed: the targets do not reproduce the source image."""
    src = render_scene("source", 2, (256, 128), seed=0)[0].astype(np.float32)
    for d in TARGET_DOMAINS:
        tgt = render_scene(d, 2, (256, 128), seed=0)[0].astype(np.float32)
        assert np.abs(tgt - src).mean() > 10, d


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_class_appears_in_a_small_set(domain):
    seen = np.zeros(256, bool)
    for i in range(10):
        seen[np.unique(render_scene(domain, i, (256, 128), seed=0)[1])] = True
    missing = [CITYSCAPES_CLASSES[c] for c in range(NUM_CLASSES) if not seen[c]]
    assert not missing, f"{domain}: classes never drawn in 10 images: {missing}"


def test_label_image_alignment_class_colours():
    """Inside labelled regions the image has the class's appearance (source domain, RGB)."""
    sky, road, veg = [], [], []
    rows = {SKY: [], ROAD: []}
    for i in range(6):
        bgr, lab = render_scene("source", i, (256, 128), seed=0)
        rgb = bgr[..., ::-1].astype(np.float32)
        for c, acc in ((SKY, sky), (ROAD, road), (VEG, veg)):
            if (lab == c).any():
                acc.append(rgb[lab == c].mean(0))
                if c in rows:
                    rows[c].append(np.nonzero(lab == c)[0].mean())
    sky, road, veg = np.mean(sky, 0), np.mean(road, 0), np.mean(veg, 0)
    assert sky[2] > sky[0] + 30 and sky.mean() > 120  # bright and blue
    assert road.max() - road.min() < 25 and road.mean() < 110  # dark grey
    assert veg[1] > veg[0] + 15 and veg[1] > veg[2] + 15  # green
    assert np.mean(rows[SKY]) < np.mean(rows[ROAD])  # sky above road


@pytest.mark.parametrize("domain,ratio", [("source", 3.0), ("target_cityscapes", 2.0)])
def test_label_boundaries_coincide_with_image_edges(domain, ratio):
    """Image gradients are much stronger on label boundaries than inside regions (a shifted label fails)."""
    on, off = [], []
    for i in range(4):
        bgr, lab = render_scene(domain, i, (256, 128), seed=0)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grad = np.abs(np.diff(grey, axis=1))
        boundary = lab[:, 1:] != lab[:, :-1]
        on.append(grad[boundary].mean())
        off.append(grad[~boundary].mean())
    assert np.mean(on) > ratio * np.mean(off), (on, off)
    # the same check with the label shifted by 3 pixels must be much weaker: the test can fail
    bgr, lab = render_scene(domain, 0, (256, 128), seed=0)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grad = np.abs(np.diff(grey, axis=1))
    shifted = np.roll(lab, 3, axis=1)
    b_true, b_shift = lab[:, 1:] != lab[:, :-1], shifted[:, 1:] != shifted[:, :-1]
    assert grad[b_true].mean() > 1.5 * grad[b_shift].mean()


def test_perspective_objects_shrink_with_distance():
    cam = Camera(f=300, h=1.5, yh=100, vx=256)
    near = cam.project([-0.9, 0.9], [0, 0], [5, 5])
    far = cam.project([-0.9, 0.9], [0, 0], [50, 50])
    assert (near[1, 0] - near[0, 0]) == pytest.approx(10 * (far[1, 0] - far[0, 0]))
    assert near[0, 1] > far[0, 1] > cam.yh  # farther ground points are higher, toward the horizon


def test_styles_are_frozen_dataclasses_one_per_domain():
    assert tuple(STYLES) == DOMAINS
    assert all(isinstance(s, DomainStyle) for s in STYLES.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        STYLES["source"].roll = 3.0
    assert STYLES["target_cityscapes"].hood is not None and STYLES["source"].jpeg is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="domain"):
        render_scene("gta", 0)
    with pytest.raises(ValueError, match="size"):
        render_scene("source", 0, size=(10, 10))
    with pytest.raises(ValueError, match="size"):
        render_scene("source", 0, size="big")
    with pytest.raises(ValueError, match="num_images"):
        generate_domain("/nonexistent/never", "source", 0)


# ------------------------------------------------------------------------------------------ layout
def test_layouts(generated):
    root, roots = generated
    assert roots == {d: os.path.join(root, d) for d in DOMAINS}
    files = {d: _files(r) for d, r in roots.items()}
    assert "images/00001.png" in files["source"] and "labels/00004_labelTrainIds.png" in files["source"]
    city = [f for f in files["target_cityscapes"] if f.startswith("leftImg8bit/val/")]
    assert len(city) == 3 and all(f.endswith("_leftImg8bit.png") for f in city)
    for f in city:
        lab = f.replace("leftImg8bit/", "gtFine/", 1).replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
        assert lab in files["target_cityscapes"]
        assert len(f.split("/")) == 4  # leftImg8bit/val/<city>/<name>
    bdd = [f for f in files["target_bdd"] if f.startswith("images/10k/val/")]
    assert len(bdd) == 3 and all(f.endswith(".jpg") for f in bdd)
    for f in bdd:
        assert "labels/sem_seg/masks/val/" + os.path.basename(f)[:-4] + ".png" in files["target_bdd"]
    mapi = [f for f in files["target_mapillary"] if f.startswith("validation/images/")]
    assert len(mapi) == 3 and all(f.endswith(".jpg") for f in mapi)
    for f in mapi:
        stem = os.path.basename(f)[:-4]
        assert f"cityscapes_trainIdLabel/val/label/{stem}.png" in files["target_mapillary"]
        assert f"validation/labels/{stem}_labelTrainIds.png" in files["target_mapillary"]
    for d in DOMAINS:
        for rel in domain_files(d, 3 if d != "source" else 4, seed=3):
            img = cv2.imread(os.path.join(roots[d], rel[0]), cv2.IMREAD_UNCHANGED)
            assert img.shape == (SMALL[1], SMALL[0], 3)
            for lab_rel in rel[1:]:
                lab = cv2.imread(os.path.join(roots[d], lab_rel), cv2.IMREAD_UNCHANGED)
                assert lab.shape == SMALL[::-1] and lab.dtype == np.uint8
                assert lab.max() <= IGNORE_LABEL and set(np.unique(lab)) <= set(range(NUM_CLASSES)) | {255}


def test_written_label_equals_render(generated):
    _, roots = generated
    img, lab = render_scene("target_cityscapes", 1, SMALL, seed=3)
    rel = domain_files("target_cityscapes", 2, seed=3)[1]
    assert np.array_equal(cv2.imread(os.path.join(roots["target_cityscapes"], rel[1]), cv2.IMREAD_UNCHANGED), lab)
    assert np.array_equal(cv2.imread(os.path.join(roots["target_cityscapes"], rel[0])), img)  # PNG: lossless


def test_generation_deterministic_and_independent_of_workers(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate_domain(a, "target_mapillary", 3, SMALL, seed=5, workers=1)
    generate_domain(b, "target_mapillary", 3, SMALL, seed=5, workers=2)
    fa, fb = _files(a), _files(b)
    assert fa == fb
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert not mismatch and not errors


# ------------------------------------------------------------------------------ refuse / resume
def test_refuses_foreign_content_unless_overwrite(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_all(str(root), num_source=1, num_target=1, size=SMALL)
    generate_all(str(root), num_source=1, num_target=1, size=SMALL, overwrite=True)
    assert (root / "notes.txt").read_text() == "mine"  # only generated folders are replaced
    # a previous generation with other parameters is refused too
    with pytest.raises(FileExistsError):
        generate_all(str(root), num_source=2, num_target=1, size=SMALL)
    with pytest.raises(NotADirectoryError):
        generate_all(str(root / "notes.txt"), num_source=1, num_target=1, size=SMALL)


def test_complete_generation_is_skipped_and_interrupted_one_resumed(tmp_path):
    root = str(tmp_path / "out")
    kw = dict(num_source=2, num_target=1, size=SMALL, seed=1)
    generate_all(root, **kw)
    stamp = {f: os.stat(os.path.join(root, f)).st_mtime_ns for f in _files(root)}
    generate_all(root, **kw)  # complete: nothing rewritten
    assert {f: os.stat(os.path.join(root, f)).st_mtime_ns for f in _files(root)} == stamp

    # simulate an interruption inside target_bdd: its marker and the top marker missing, a file missing
    os.remove(os.path.join(root, ".synthetic_complete.json"))
    os.remove(os.path.join(root, "target_bdd", ".synthetic_complete.json"))
    bdd_img = os.path.join(root, "target_bdd", domain_files("target_bdd", 1, seed=1)[0][0])
    reference = open(bdd_img, "rb").read()
    os.remove(bdd_img)
    generate_all(root, **kw)
    assert open(bdd_img, "rb").read() == reference
    assert os.path.isfile(os.path.join(root, ".synthetic_complete.json"))
    after = {f: os.stat(os.path.join(root, f)).st_mtime_ns for f in _files(root)}
    src_img = os.path.join("source", "images", "00001.png")
    assert after[src_img] == stamp[src_img]  # finished domains were not regenerated


# ----------------------------------------------------------------------------------- statistics
def test_class_histogram_and_marker(generated):
    _, roots = generated
    marker = json.load(open(os.path.join(roots["source"], ".synthetic_complete.json")))
    labels = [os.path.join(roots["source"], f[1]) for f in marker["files"]]
    hist = class_histogram(labels)
    assert hist.tolist() == marker["class_pixels"]
    assert hist.sum() == 4 * SMALL[0] * SMALL[1]  # the source has no ignore pixels


# --------------------------------------------------------------------------- real dataset loaders
def test_layouts_load_through_dataset_loaders(generated):
    datasets = pytest.importorskip("mfuser.data.datasets", reason="dataset loaders (mfuser.data.datasets) missing")
    _, roots = generated
    dicts = {
        "source": datasets.load_gta5(roots["source"]),
        "target_cityscapes": datasets.load_cityscapes(roots["target_cityscapes"], "val"),
        "target_bdd": datasets.load_bdd100k(roots["target_bdd"], "val"),
        "target_mapillary": datasets.load_mapillary(roots["target_mapillary"], "val"),
    }
    for d, recs in dicts.items():
        assert len(recs) == (4 if d == "source" else 3), d
        for r in recs:
            assert os.path.isfile(r["file_name"]) and os.path.isfile(r["sem_seg_file_name"])
            assert (r.get("height"), r.get("width")) in ((None, None), (SMALL[1], SMALL[0]))
    from mfuser.data.labels import read_label

    for recs in dicts.values():
        lab = read_label(recs[0]["sem_seg_file_name"], recs[0].get("label_format", "trainid"))
        assert lab.shape == SMALL[::-1]


def test_rcs_statistics_load_through_the_shared_reader(generated):
    _, roots = generated
    stats = load_class_stats(os.path.join(roots["source"], RCS_STATS_FILENAME))
    recs = pytest.importorskip("mfuser.data.datasets").load_gta5(roots["source"])
    assert sorted(stats) == sorted(os.path.normpath(r["sem_seg_file_name"]) for r in recs)
    for r in recs:
        counts = stats[os.path.normpath(r["sem_seg_file_name"])]
        lab = cv2.imread(r["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        assert counts == np.bincount(lab.ravel(), minlength=256)[:NUM_CLASSES].tolist()


# ---------------------------------------------------------------------------------------------- CLI
def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--help"])
    assert e.value.code == 0 and "--num-source" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main([str(tmp_path / "x"), "--size", "wide"])
    root = tmp_path / "cli"
    assert cli_main([str(root), "--num-source", "1", "--num-target", "1", "--size", "128x64"]) == 0
    assert sorted(os.listdir(root)) == sorted(
        list(DOMAINS) + [".synthetic_complete.json", ".synthetic_generation.json"]
    )
    (image,) = glob.glob(str(root / "source" / "images" / "*.png"))
    assert Image.open(image).size == (64, 128)  # --size is HxW, as in every tool (PIL reports W, H)
    (root / "source" / "extra").mkdir()
    assert cli_main([str(root), "--num-source", "2", "--num-target", "1", "--size", "128x64"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_cli_script_is_a_thin_wrapper(tmp_path):
    """datasets/generate_synthetic.py runs from any directory (mfuser is installed, no sys.path edits)."""
    script = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "generate_synthetic.py")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(script), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0 and "--num-source" in proc.stdout, proc.stderr[-2000:]
