"""The demo (tools/demo.py -> mfuser.engine.demo) on generated images plus a non-image file (toy stand-in model)."""
import os

import numpy as np
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.tools.toy_model import generate_toy_data

TOY_CONFIG = os.path.join(REPO_ROOT, "tests", "tools", "toy_config.py")


def _load_demo():
    from mfuser.engine import demo

    return demo


def test_demo_writes_overlays_and_names_bad_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MFUSER_TOY_DATA", generate_toy_data(str(tmp_path / "data")))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, (h, w) in enumerate([(24, 32), (30, 41)]):
        pixels = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"im{i}.png")
    (inputs / "broken.png").write_text("this is not an image")
    out = tmp_path / "out"
    code = _load_demo().main(["--config-file", TOY_CONFIG, "--input", str(inputs), "--output", str(out),
                              "--dataset", "toy_target_a", "--save-labels", "--resize", "64", "48"])
    err = capsys.readouterr().err
    assert code == 1  # one input failed
    assert "broken.png" in err
    assert sorted(os.listdir(out)) == ["im0_labelTrainIds.png", "im0_overlay.png", "im1_labelTrainIds.png",
                                       "im1_overlay.png"]
    label = np.asarray(Image.open(out / "im1_labelTrainIds.png"))
    assert label.shape == (30, 41) and label.max() < 3  # original size, trainIds of the 3 toy classes
    overlay = np.asarray(Image.open(out / "im1_overlay.png"))
    assert overlay.shape[1] == 41 and overlay.shape[0] > 30  # image + legend rows


def test_demo_all_good_exits_zero_and_bad_config_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MFUSER_TOY_DATA", generate_toy_data(str(tmp_path / "data")))
    demo = _load_demo()
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(img)
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(img), "--output", str(tmp_path / "o")]) == 0
    assert demo.main(["--config-file", str(tmp_path / "nope.py"), "--input", str(img), "--output", "x"]) == 2
    assert "nope.py" in capsys.readouterr().err


def test_overrides_are_positional_wherever_they_stand(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MFUSER_TOY_DATA", generate_toy_data(str(tmp_path / "data")))
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(img)
    demo = _load_demo()
    missing = str(tmp_path / "none.pth")
    for argv in (["--input", str(img), f"train.init_checkpoint={missing}", "--output", str(tmp_path / "o")],
                 ["--input", str(img), "--output", str(tmp_path / "o"), f"train.init_checkpoint={missing}"],
                 ["--input", str(img), "--output", str(tmp_path / "o"), "--opts", f"train.init_checkpoint={missing}"]):
        assert demo.main(["--config-file", TOY_CONFIG, *argv]) == 2  # the override reached the config
        assert "none.pth" in capsys.readouterr().err
