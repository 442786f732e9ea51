"""The web demo (tools/web_demo.py -> mfuser.engine.web_demo): its work without a browser, its command line, and the
page itself in a real headless browser (Debian's Chromium driven by Playwright) with the real Cityscapes frame.

The browser test needs the ``demo`` extra (Gradio, Playwright's Python package) and ``/usr/bin/chromium``;
``tools/setup_env.sh`` installs all three. It is skipped, saying which is missing, only when one of them is.
"""
import io
import os
import socket
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.tools.test_demo import TOY_CONFIG, _frames, _probe, _write_video, toy_checkpoint

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FRAME = ("data", "cityscapes_sample", "leftImg8bit", "val", "frankfurt", "frankfurt_000000_000294_leftImg8bit.png")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    return toy_checkpoint(tmp_path, monkeypatch)


def _web_demo():
    from mfuser.engine import web_demo

    return web_demo


def _predictor(toy):
    from mfuser.engine.demo import build_predictor, get_parser

    return build_predictor(get_parser().parse_args(["--config-file", TOY_CONFIG, "--input", "x", "--output", "o",
                                                    toy]))


def test_web_demo_work_without_a_browser(tmp_path, toy):
    """Image -> same-size overlay, legend with areas, trainId PNG of the input's size; opacity 0 gives the input
    back; a video -> a WebM with the same frames."""
    web_demo = _web_demo()
    demo = web_demo.WebDemo(_predictor(toy), workdir=str(tmp_path / "work"), max_video_frames=4)
    image = np.random.default_rng(0).integers(0, 255, (30, 41, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "street.png")
    overlay, legend, label_path, state = demo.segment_image(str(tmp_path / "street.png"), 0.6)
    assert overlay.shape == image.shape and not np.array_equal(overlay, image)
    labels = np.asarray(Image.open(label_path))
    assert os.path.basename(label_path) == "street_labelTrainIds.png" and labels.shape == (30, 41)
    assert set(np.unique(labels)) <= {0, 1, 2}
    shares = {name: 100 * np.mean(labels == c) for c, name in enumerate(("road", "car", "sky"))}
    for name, share in shares.items():
        if share:
            assert f"<td>{name}</td>" in legend and (f"{share:.1f} %" in legend or share < 0.05)
    np.testing.assert_array_equal(demo.reblend(state, 0.0), image)
    src = tmp_path / "clip.mp4"
    _write_video(src, _frames(6), 10, "mp4v")
    video, legend, note = demo.segment_video(str(src), 0.5)
    assert video.endswith(".webm") and _probe(video)[0] == 4 and "first 4 frames" in note and "%" in legend
    with pytest.raises(ValueError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("not an image")
        demo.segment_image(str(tmp_path / "notes.txt"), 0.6)


def test_web_demo_command_line_errors(tmp_path, toy, monkeypatch, capsys):
    web_demo = _web_demo()
    assert web_demo.main(["--config-file", str(tmp_path / "nope.py")]) == 2
    assert "nope.py" in capsys.readouterr().err
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
        assert web_demo.main(["--config-file", TOY_CONFIG, toy]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the web demo needs Gradio") and "pip install -e '.[demo]'" in err
    try:
        web_demo.import_gradio()
    except ImportError:
        return  # the model options are checked after Gradio: nothing more to see without it
    assert web_demo.main(["--config-file", TOY_CONFIG]) == 2  # no trained weights
    assert "--allow-random-weights" in capsys.readouterr().err


def _missing_browser_parts():
    missing = []
    for module, what in (("gradio", "gradio"), ("playwright", "Playwright's Python package")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{what} is not installed (pip install -e '.[demo]'; tools/setup_env.sh installs it)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} not found (apt-get install chromium; tools/setup_env.sh installs it)")
    return missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _no_outbound_connections(monkeypatch) -> list:
    """Make every connection from this process to a non-loopback address fail, and record it."""
    attempts, connect = [], socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (host.startswith("127.") or host == "::1"):
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    return attempts


def test_web_demo_in_a_headless_browser(tmp_path, toy, shared_dir, monkeypatch):
    missing = _missing_browser_parts()
    if missing:
        pytest.skip("; ".join(missing))
    from playwright.sync_api import sync_playwright

    outbound = _no_outbound_connections(monkeypatch)  # the server side: Gradio must not phone home

    frame = os.path.join(shared_dir, *FRAME)
    image = np.asarray(Image.open(frame).convert("RGB"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    web_demo = _web_demo()
    app, _, workdir = web_demo.create_app(["--config-file", TOY_CONFIG, toy, "--max-video-frames", "3"],
                                          workdir=str(tmp_path / "work"))
    import gradio.analytics

    assert not gradio.analytics.analytics_enabled()  # nothing phones home from the server
    url = web_demo.launch(app, port=_free_port(), workdir=workdir, block=False).rstrip("/")
    elsewhere = []

    def local_only(route):  # the page must work offline: every request to another host is refused and recorded
        if route.request.url.startswith((url, "data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                accept_downloads=True)
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.route("**/*", local_only)
            page.goto(url)
            page.locator("#input-image input[type=file]").set_input_files(frame)
            overlay = page.locator("#overlay img")
            overlay.wait_for(state="visible")
            page.wait_for_function("() => { const i = document.querySelector('#overlay img');"
                                   " return i && i.complete && i.naturalWidth > 0; }")
            size = page.evaluate("() => { const i = document.querySelector('#overlay img');"
                                 " return [i.naturalWidth, i.naturalHeight]; }")
            assert size == [image.shape[1], image.shape[0]]  # the overlay has the input's size
            shown = _png(page.request.get(overlay.get_attribute("src")).body())
            assert shown.shape == image.shape and not np.array_equal(shown, image)
            legend = page.locator("#legend").inner_text()
            assert "%" in legend and any(name in legend for name in ("road", "car", "sky"))

            with page.expect_download() as download:
                page.locator("#label-file a[download]").first.click()
            label_path = tmp_path / "downloaded.png"
            download.value.save_as(label_path)
            label = Image.open(label_path)
            assert label.size == (image.shape[1], image.shape[0]) and label.mode == "L"
            assert set(np.unique(np.asarray(label))) <= {0, 1, 2, 255}

            before = overlay.get_attribute("src")
            opacity = page.locator("#opacity input[type=number]")
            opacity.fill("0")
            opacity.press("Enter")
            page.wait_for_function("(s) => document.querySelector('#overlay img').src !== s", arg=before)
            page.wait_for_function("() => document.querySelector('#overlay img').complete")
            np.testing.assert_array_equal(_png(page.request.get(overlay.get_attribute("src")).body()), image)

            clip = tmp_path / "clip.mp4"
            _write_video(clip, _frames(5), 10, "mp4v")
            page.get_by_role("tab", name="Video").click()
            page.locator("#input-video input[type=file]").set_input_files(str(clip))
            page.locator("#overlay-video video").wait_for(state="visible")
            page.wait_for_function("() => { const v = document.querySelector('#overlay-video video');"
                                   " return v && v.src && v.readyState >= 1; }")  # the browser could decode it
            assert "3 frame(s)" in page.locator("#video-note").inner_text()
            browser.close()
    finally:
        app.close()
    assert not elsewhere, f"the page asked other hosts: {elsewhere}"
    assert not outbound, f"the server connected to other hosts: {outbound}"
    assert cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED).shape == image.shape[:2]
