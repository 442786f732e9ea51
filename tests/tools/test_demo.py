"""The demo (tools/demo.py -> mfuser.engine.demo) on generated images and videos (toy stand-in model): overlays and
labels, trained weights required, no output replacing another, every image encoding read as RGB, video in and out."""
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.tools.toy_model import ToySemSeg, generate_toy_data

TOY_CONFIG = os.path.join(REPO_ROOT, "tests", "tools", "toy_config.py")


def _load_demo():
    from mfuser.engine import demo

    return demo


def toy_checkpoint(tmp_path, monkeypatch) -> str:
    """Registers the toy domains; returns ``train.init_checkpoint=<a toy model checkpoint>``."""
    monkeypatch.setenv("MFUSER_TOY_DATA", generate_toy_data(str(tmp_path / "data")))
    torch.manual_seed(0)
    path = tmp_path / "toy.pth"
    torch.save({"model": ToySemSeg(num_classes=3, hidden=8).state_dict()}, path)
    return f"train.init_checkpoint={path}"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    return toy_checkpoint(tmp_path, monkeypatch)


def _save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_demo_writes_overlays_and_names_bad_files(tmp_path, toy, capsys):
    inputs = tmp_path / "inputs"
    for i, (h, w) in enumerate([(24, 32), (30, 41)]):
        _save(inputs / f"im{i}.png", np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8))
    (inputs / "broken.png").write_text("this is not an image")
    out = tmp_path / "out"
    code = _load_demo().main(["--config-file", TOY_CONFIG, "--input", str(inputs), "--output", str(out),
                              "--dataset", "toy_target_a", "--save-labels", "--resize", "64", "48", toy])
    captured = capsys.readouterr()
    assert code == 1  # one input failed
    assert "broken.png" in captured.err and "2 image(s) written" in captured.out
    assert sorted(os.listdir(out)) == ["im0_labelTrainIds.png", "im0_overlay.png", "im1_labelTrainIds.png",
                                       "im1_overlay.png"]
    label = np.asarray(Image.open(out / "im1_labelTrainIds.png"))
    assert label.shape == (30, 41) and label.max() < 3  # original size, trainIds of the 3 toy classes
    overlay = np.asarray(Image.open(out / "im1_overlay.png"))
    assert overlay.shape[1] == 41 and overlay.shape[0] > 30  # image + legend rows


def test_demo_all_good_exits_zero_and_bad_config_fails(tmp_path, toy, capsys):
    demo = _load_demo()
    img = tmp_path / "a.png"
    _save(img, np.zeros((24, 32, 3), np.uint8))
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(img), "--output", str(tmp_path / "o"), toy]) == 0
    assert demo.main(["--config-file", str(tmp_path / "nope.py"), "--input", str(img), "--output", "x"]) == 2
    assert "nope.py" in capsys.readouterr().err


def test_demo_refuses_random_weights_unless_asked(tmp_path, toy, capsys):
    demo = _load_demo()
    img = tmp_path / "a.png"
    _save(img, np.zeros((24, 32, 3), np.uint8))
    out = tmp_path / "o"
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(img), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no trained weights") and "--allow-random-weights" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(img), "--output", str(out),
                      "--allow-random-weights"]) == 0
    assert "random weights" in capsys.readouterr().err and (out / "a_overlay.png").is_file()


def test_overrides_are_positional_wherever_they_stand(tmp_path, toy, capsys):
    img = tmp_path / "a.png"
    _save(img, np.zeros((24, 32, 3), np.uint8))
    demo = _load_demo()
    missing = str(tmp_path / "none.pth")
    for argv in (["--input", str(img), f"train.init_checkpoint={missing}", "--output", str(tmp_path / "o")],
                 ["--input", str(img), "--output", str(tmp_path / "o"), f"train.init_checkpoint={missing}"],
                 ["--input", str(img), "--output", str(tmp_path / "o"), "--opts", f"train.init_checkpoint={missing}"]):
        assert demo.main(["--config-file", TOY_CONFIG, *argv]) == 2  # the override reached the config
        assert "none.pth" in capsys.readouterr().err


def test_inputs_with_the_same_name_never_share_an_output(tmp_path, toy, capsys):
    """a/x.png, b/x.png, b/x.jpg (+ a/x.png named twice): three outputs, three reported, relative paths kept."""
    rng = np.random.default_rng(0)
    for rel in ("a/x.png", "b/x.png", "b/x.jpg"):
        _save(tmp_path / "in" / rel, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    demo = _load_demo()
    a, b = tmp_path / "in" / "a", tmp_path / "in" / "b"
    out = tmp_path / "out"
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(a), str(b), str(a / "x.png"), "--output", str(out),
                      "--save-labels", toy]) == 0
    assert "3 image(s) written" in capsys.readouterr().out
    written = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert written == ["a/x_labelTrainIds.png", "a/x_overlay.png", "b/x_jpg_labelTrainIds.png", "b/x_jpg_overlay.png",
                       "b/x_png_labelTrainIds.png", "b/x_png_overlay.png"]
    assert demo.output_stems(["p/A.png", "q/a.png", "q/A.png", "r/y_png.png", "r/y.png", "r/y.jpg"]) == [
        "p/A", "q/a", "q/A_2", "r/y_png", "r/y_png_2", "r/y_jpg"]  # case-insensitive file systems included
    assert demo.output_stems(["a/x.png", "b/y.png"]) == ["x", "y"]  # different names: flat, as before


def _modes(tmp_path):
    """(file, expected RGB, tolerance) for the encodings a user may have; ``base`` is the RGB content."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    gray = base[:, :, 0]
    gray3 = np.repeat(gray[:, :, None], 3, axis=2)
    cases = {}

    def add(name, expected, tol=0, save=None):
        path = str(tmp_path / name)
        save(path)
        cases[name] = (path, expected, tol)

    add("gray16.png", gray3, save=lambda p: cv2.imwrite(p, gray.astype(np.uint16) * 257))  # PIL mode I;16
    add("rgb16.png", base, save=lambda p: cv2.imwrite(p, base[:, :, ::-1].astype(np.uint16) * 257))
    rgba16 = np.dstack([base[:, :, ::-1].astype(np.uint16) * 257, np.full(gray.shape, 30000, np.uint16)])
    add("rgba16.png", base, save=lambda p: cv2.imwrite(p, rgba16))
    pal = Image.fromarray(base).quantize(16)
    add("palette.png", np.asarray(pal.convert("RGB")), save=pal.save)
    add("la.png", gray3, save=lambda p: Image.fromarray(np.dstack([gray, gray // 2])).save(p))  # mode LA
    add("rgba.png", base, save=lambda p: Image.fromarray(np.dstack([base, gray])).save(p))
    add("gray.png", gray3, save=lambda p: Image.fromarray(gray).save(p))
    add("cmyk.jpg", base, tol=40, save=lambda p: Image.fromarray(base).convert("CMYK").save(p, quality=100))
    add("cmyk.tif", base, tol=2, save=lambda p: Image.fromarray(base).convert("CMYK").save(p))
    add("float.tif", gray3, save=lambda p: Image.fromarray(gray.astype(np.float32) / 255).save(p))  # mode F
    add("bilevel.png", np.repeat((gray >= 128)[:, :, None] * np.uint8(255), 3, axis=2),
        save=lambda p: Image.fromarray(gray >= 128).save(p))
    add("float.pfm", base, save=lambda p: cv2.imwrite(p, base[:, :, ::-1].astype(np.float32) / 255))  # OpenCV only
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    add("exif_rot.jpg", np.rot90(base, k=-1), tol=40,
        save=lambda p: Image.fromarray(base).save(p, exif=exif, quality=100, subsampling=0))
    return cases


def test_every_image_encoding_is_read_as_rgb(tmp_path):
    demo = _load_demo()
    for name, (path, expected, tol) in _modes(tmp_path).items():
        rgb = demo.read_image_rgb(path)
        assert rgb.dtype == np.uint8 and rgb.shape == expected.shape, (name, rgb.shape)
        diff = np.abs(rgb.astype(int) - expected).max()
        assert diff <= tol, (name, diff)
    # refused, naming the file: float outside [0, 1], 32-bit integers, not an image
    bad_float, big_int, text = tmp_path / "hdr.tif", tmp_path / "i32.tif", tmp_path / "notes.png"
    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(bad_float)
    Image.fromarray(np.full((4, 4), 100000, np.int32)).save(big_int)
    text.write_text("not an image")
    for path, match in ((bad_float, r"float values in \[3.5, 3.5\]"), (big_int, r"integer values in \[100000"),
                        (text, "neither PIL .* nor OpenCV")):
        with pytest.raises(ValueError, match=match) as info:
            demo.read_image_rgb(str(path))
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        demo.read_image_rgb(str(tmp_path / "gone.png"))
    assert info.value.filename == str(tmp_path / "gone.png")


def test_demo_gives_the_model_rgb_whatever_the_predictor_default(tmp_path, toy):
    """The toy config declares no image format, so MFuserPredictor defaults to BGR input (as detectron2's): the demo
    must still segment the RGB content, i.e. what a BGR-fed predictor makes of the BGR-flipped pixels."""
    from detectron2.config import LazyConfig

    from mfuser.engine import MFuserPredictor

    pixels = np.zeros((24, 32, 3), np.uint8)
    pixels[:, :16] = (200, 30, 10)
    pixels[:, 16:] = np.random.default_rng(3).integers(0, 255, (24, 16, 3), dtype=np.uint8)
    _save(tmp_path / "in" / "c.png", pixels)
    demo = _load_demo()
    assert demo.main(["--config-file", TOY_CONFIG, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                      "--save-labels", toy]) == 0
    cfg = LazyConfig.apply_overrides(LazyConfig.load(TOY_CONFIG), [toy])
    bgr_predictor = MFuserPredictor(cfg, input_format="BGR")
    expected = bgr_predictor(np.ascontiguousarray(pixels[:, :, ::-1]))["sem_seg"].argmax(0).numpy()
    swapped = bgr_predictor(pixels)["sem_seg"].argmax(0).numpy()
    assert not np.array_equal(expected, swapped)  # the toy model sees colour: the test can tell the orders apart
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "c_labelTrainIds.png")), expected)


def test_demo_segments_a_16bit_gray_image_like_its_8bit_version(tmp_path, toy):
    gray = np.random.default_rng(2).integers(0, 256, (24, 32), dtype=np.uint8)
    _save(tmp_path / "in8" / "g.png", gray)
    (tmp_path / "in16").mkdir()
    cv2.imwrite(str(tmp_path / "in16" / "g.png"), gray.astype(np.uint16) * 257)  # PIL reads it as mode I;16
    demo = _load_demo()
    for folder in ("in8", "in16"):
        assert demo.main(["--config-file", TOY_CONFIG, "--input", str(tmp_path / folder), "--output",
                          str(tmp_path / f"out_{folder}"), "--save-labels", toy]) == 0
    labels = [np.asarray(Image.open(tmp_path / f"out_{f}" / "g_labelTrainIds.png")) for f in ("in8", "in16")]
    np.testing.assert_array_equal(labels[0], labels[1])


# ------------------------------------------------------------------------------------------------------- video
def _write_video(path, frames, fps, fourcc):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def _frames(n, h=64, w=128):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[: h // 3] = (180, 130, 70)  # "sky" in BGR
        f[h // 2:, i * 10: i * 10 + 30] = (142, 0, 0)
        out.append(f)
    return out


def _probe(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return n, cap.get(cv2.CAP_PROP_FPS), size


def test_video_in_video_out_same_frames_fps_and_size(tmp_path, toy, capsys):
    src = tmp_path / "clip.mp4"
    _write_video(src, _frames(5), 12.5, "mp4v")
    out = tmp_path / "res" / "clip_overlay.mp4"
    demo = _load_demo()
    assert demo.main(["--config-file", TOY_CONFIG, "--video-input", str(src), "--output", str(out), toy]) == 0
    assert _probe(out) == (5, 12.5, (128, 64))
    summary = capsys.readouterr().out
    assert "5 frame(s) written" in summary and "ms/frame" in summary and "frames/s end to end" in summary
    assert os.listdir(out.parent) == ["clip_overlay.mp4"]  # no temporary file left
    # an output directory gets <stem>_overlay.mp4
    assert demo.main(["--config-file", TOY_CONFIG, "--video-input", str(src), "--output", str(tmp_path), toy]) == 0
    assert _probe(tmp_path / "clip_overlay.mp4")[0] == 5


def test_video_undecodable_frame_is_reported_and_skipped(tmp_path, toy, capsys):
    src = tmp_path / "clip.avi"
    _write_video(src, _frames(8), 10, "MJPG")
    data = bytearray(src.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]  # one JPEG per frame
    assert len(starts) == 8
    data[starts[3] + 4: starts[3] + 600] = bytes(596)  # frame 3's JPEG header destroyed
    src.write_bytes(bytes(data))
    out = tmp_path / "out.avi"
    assert _load_demo().main(["--config-file", TOY_CONFIG, "--video-input", str(src), "--output", str(out), toy]) == 1
    captured = capsys.readouterr()
    assert "skipped frame 3: it could not be decoded" in captured.err
    assert "7 frame(s) written" in captured.out and "skipped: [3]" in captured.out
    assert _probe(out)[0] == 7


def test_video_bad_input_one_clear_error_and_nothing_written(tmp_path, toy, capsys):
    demo = _load_demo()
    text, empty = tmp_path / "text.mp4", tmp_path / "empty.mp4"
    text.write_text("not a video")
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 32))
    writer.release()  # a container with zero frames
    out = tmp_path / "out" / "o.mp4"
    for src in (text, empty):
        assert demo.main(["--config-file", TOY_CONFIG, "--video-input", str(src), "--output", str(out), toy]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: cannot open video") and str(src) in err and len(err.splitlines()) == 1
    assert demo.main(["--config-file", TOY_CONFIG, "--video-input", str(tmp_path / "gone.mp4"), "--output", str(out),
                      toy]) == 2
    src = tmp_path / "clip.mp4"
    _write_video(src, _frames(2), 10, "mp4v")
    assert demo.main(["--config-file", TOY_CONFIG, "--video-input", str(src), "--output", str(tmp_path / "o.gif"),
                      toy]) == 2
    assert "expected a video file ending in one of" in capsys.readouterr().err
    assert not out.parent.exists() and not (tmp_path / "o.gif").exists()


def test_video_zero_readable_frames_writes_nothing(tmp_path, toy):
    """A container that opens but whose every frame is undecodable: one error, no output, no temporary file."""
    src = tmp_path / "clip.avi"
    _write_video(src, _frames(3), 10, "MJPG")
    data = bytearray(src.read_bytes())
    for i in [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]:
        data[i + 4: i + 600] = bytes(596)
    src.write_bytes(bytes(data))
    demo = _load_demo()
    predictor = type("P", (), {"metadata": type("M", (), {"stuff_classes": ["a"], "stuff_colors": [(1, 2, 3)]})()})()
    with pytest.raises(ValueError, match="zero readable frames"):
        demo.run_video(predictor, str(src), str(tmp_path / "out" / "o.mp4"), progress=False)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="a camera is connected")
def test_webcam_without_camera_is_one_clear_error(tmp_path, toy, capsys):
    code = _load_demo().main(["--config-file", TOY_CONFIG, "--webcam", "--output", str(tmp_path / "cam.mp4"), toy])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: no camera") and len(err.splitlines()) == 1
    assert not (tmp_path / "cam.mp4").exists()
