"""A local web page to try a model: drop an image or a short video, see the overlay next to it with the class legend
and each class's area, change the overlay opacity, download the label PNG. The logic behind ``tools/web_demo.py``:

    pip install -e '.[demo]'     # Gradio (optional: the core install does not need it); tools/setup_env.sh does it
    python tools/web_demo.py --config-file CFG train.init_checkpoint=model.pth [--port 7860]

The page is served by Gradio on ``--host`` (default 127.0.0.1, this machine only) and needs no internet: Gradio's
usage analytics and version check are switched off (``GRADIO_ANALYTICS_ENABLED=False``), no share link is made,
and the page loads nothing from other hosts. The model options are those of ``tools/demo.py``
(:func:`mfuser.engine.demo.add_model_arguments`: ``--dataset``, ``--resize``, trained weights required unless
``--allow-random-weights``). Images are read like the demo reads them (:func:`mfuser.engine.demo.read_image_rgb`:
any bit depth or colour mode). Videos are segmented frame by frame up to ``--max-video-frames`` and shown as VP8
WebM, which browsers play. Gradio is imported only here, inside the functions that need it.
"""
from __future__ import annotations

import argparse
import html
import os
import shutil
import sys
import tempfile
from typing import List, Tuple

import numpy as np
from PIL import Image

from mfuser.utils.cli import UsageError, guarded_main
from mfuser.utils.io import atomic_write
from mfuser.utils.visualizer import areas_from_counts, blend_overlay, class_areas

from .demo import add_model_arguments, build_predictor, predict_labels, read_image_rgb, run_video

__all__ = ["WebDemo", "build_app", "get_parser", "import_gradio", "launch", "legend_html", "main"]

INSTALL_HINT = "pip install -e '.[demo]' (tools/setup_env.sh installs it)"


def import_gradio():
    """``import gradio`` with its analytics and version check switched off, or one clear error saying how to get it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before the import: gradio reads it at import and at launch
    try:
        import gradio
    except ImportError as e:
        raise ImportError(f"the web demo needs Gradio, which is not installed ({e}): {INSTALL_HINT}") from None
    return gradio


def _percent(fraction: float) -> str:
    return "< 0.1 %" if 0 < fraction < 0.0005 else f"{100 * fraction:.1f} %"


def legend_html(metadata, areas: List[Tuple[int, float]]) -> str:
    """An HTML table: one row per ``(class_id, fraction)`` (:func:`mfuser.utils.visualizer.class_areas`) with the
    class colour, its name and the percentage of the image (of all video frames) it covers."""
    swatch = "display:inline-block;width:14px;height:14px;background:rgb"
    rows = "".join(
        f'<tr><td><span style="{swatch}{tuple(int(v) for v in metadata.stuff_colors[c])}"></span></td>'
        f'<td>{html.escape(str(metadata.stuff_classes[c]))}</td>'
        f'<td style="text-align:right">{_percent(fraction)}</td></tr>'
        for c, fraction in areas)
    return (f'<table class="mfuser-legend"><thead><tr><th></th><th>class</th><th>area</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>" if areas else "<p>no class found</p>")


class WebDemo:
    """The page's work, without Gradio: segment an uploaded image or video, re-blend at another opacity.

    Args:
        predictor: an :class:`mfuser.engine.MFuserPredictor` (``predictor.metadata`` names the classes).
        workdir: folder for label PNGs and videos (one sub-folder per request).
        max_video_frames: frames of an uploaded video that are segmented (the rest is left out, and said so).
    """

    def __init__(self, predictor, *, workdir: str, max_video_frames: int = 150):
        self.predictor = predictor
        self.metadata = predictor.metadata
        self.workdir = workdir
        self.max_video_frames = max_video_frames
        os.makedirs(workdir, exist_ok=True)

    def _request_dir(self) -> str:
        return tempfile.mkdtemp(prefix="req-", dir=self.workdir)

    def segment_image(self, path: str, alpha: float):
        """Image file -> ``(overlay (H, W, 3) uint8 RGB, legend HTML, label PNG path, state)``.

        The label PNG holds the trainIds (uint8, ``H x W`` of the input, 255 = no class), named
        ``<input stem>_labelTrainIds.png``. ``state`` (``{"image", "labels"}``) lets :meth:`reblend` change the
        opacity without running the model again.

        Raises:
            ValueError / FileNotFoundError: the file is not an image (:func:`read_image_rgb`).
        """
        image = read_image_rgb(path)
        labels = predict_labels(self.predictor, image)
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        label_path = os.path.join(self._request_dir(), f"{stem}_labelTrainIds.png")
        atomic_write(label_path, lambda tmp: Image.fromarray(labels).save(tmp, format="PNG"), suffix=".png")
        legend = legend_html(self.metadata, class_areas(labels, len(self.metadata.stuff_classes)))
        return self.reblend({"image": image, "labels": labels}, alpha), legend, label_path, {"image": image,
                                                                                             "labels": labels}

    def reblend(self, state, alpha: float) -> np.ndarray | None:
        """The overlay of a segmented image (``state`` from :meth:`segment_image`) at opacity ``alpha``."""
        if not state:
            return None
        return blend_overlay(state["image"], state["labels"], self.metadata, float(alpha))

    def segment_video(self, path: str, alpha: float) -> Tuple[str, str, str]:
        """Video file -> ``(overlaid VP8 WebM path, legend HTML over all frames, a note on frames/time)``.

        Raises:
            ValueError / FileNotFoundError: not a video OpenCV opens, or no decodable frame.
        """
        stem = os.path.splitext(os.path.basename(path))[0] or "video"
        out = os.path.join(self._request_dir(), f"{stem}_overlay.webm")
        report = run_video(self.predictor, path, out, alpha=float(alpha), max_frames=self.max_video_frames,
                           progress=False)
        areas = areas_from_counts(report.class_pixels)
        note = report.summary().replace(out, os.path.basename(out))
        if report.frames + len(report.skipped) >= self.max_video_frames:
            note += f" (the first {self.max_video_frames} frames; --max-video-frames sets this)"
        return out, legend_html(self.metadata, areas), note


def build_app(demo: WebDemo, *, title: str = "MFuser semantic segmentation", alpha: float = 0.6):
    """The Gradio ``Blocks`` page of ``demo``: an image tab and a video tab, each input next to its overlay.

    Element ids (for tests and custom CSS): ``input-image``, ``overlay``, ``legend``, ``opacity``, ``label-file``,
    ``input-video``, ``overlay-video``, ``video-legend``, ``video-note``.
    """
    gr = import_gradio()

    def on_image(path, opacity):
        if not path:
            return None, "", None, None
        try:
            return demo.segment_image(path, opacity)
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None

    def on_video(path, opacity):
        if not path:
            return None, "", ""
        try:
            return demo.segment_video(path, opacity)
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {html.escape(title)}\nDrop an image or a short video. Classes: "
                    f"{html.escape(', '.join(map(str, demo.metadata.stuff_classes)))}.")
        opacity = gr.Slider(0.0, 1.0, value=alpha, step=0.05, label="overlay opacity", elem_id="opacity")
        state = gr.State(None)
        with gr.Tab("Image"):
            with gr.Row():
                image_in = gr.Image(type="filepath", image_mode=None, sources=["upload"], label="input",
                                    elem_id="input-image")
                overlay = gr.Image(type="numpy", label="overlay", interactive=False, format="png", elem_id="overlay")
            with gr.Row():
                legend = gr.HTML(elem_id="legend")
                label_file = gr.File(label="label PNG (trainIds, the input's size)", interactive=False,
                                     elem_id="label-file")
        with gr.Tab("Video"):
            with gr.Row():
                video_in = gr.Video(sources=["upload"], label="input video", elem_id="input-video")
                video_out = gr.Video(label="overlay", interactive=False, elem_id="overlay-video")
            with gr.Row():
                video_legend = gr.HTML(elem_id="video-legend")
                video_note = gr.Markdown(elem_id="video-note")
        image_in.change(on_image, [image_in, opacity], [overlay, legend, label_file, state])
        opacity.change(demo.reblend, [state, opacity], overlay)
        video_in.change(on_video, [video_in, opacity], [video_out, video_legend, video_note])
    return app


def launch(app, *, host: str = "127.0.0.1", port: int | None = None, workdir: str | None = None,
           block: bool = True):
    """Serve ``app`` locally with nothing sent elsewhere (no share link, no analytics, no server-side rendering).
    ``block=False`` returns at once (the server runs in a thread; ``app.close()`` stops it). Returns the local URL."""
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
               allowed_paths=[workdir] if workdir else None, ssr_mode=False, quiet=not block, show_error=True)
    return app.local_url


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/web_demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: the local network too)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free from 7860)")
    p.add_argument("--alpha", type=float, default=0.6, help="initial overlay opacity in [0, 1]")
    p.add_argument("--max-video-frames", type=int, default=150, metavar="N",
                   help="segment at most the first N frames of an uploaded video")
    return add_model_arguments(p)


def create_app(argv=None, *, workdir: str | None = None):
    """Parse ``argv``, build the predictor and the page: ``(app, args, workdir)`` (Gradio checked first).
    ``workdir``: where label PNGs and videos go (default: a new temporary folder)."""
    args = get_parser().parse_args(argv)
    if not os.path.isfile(args.config_file):
        raise UsageError(f"--config-file: no such file: {args.config_file!r}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.max_video_frames < 1:
        raise UsageError(f"--max-video-frames must be positive, got {args.max_video_frames}")
    import_gradio()  # before the model loads: a missing extra is said at once
    predictor = build_predictor(args)
    workdir = workdir or tempfile.mkdtemp(prefix="mfuser-web-demo-")
    demo = WebDemo(predictor, workdir=workdir, max_video_frames=args.max_video_frames)
    return build_app(demo, alpha=args.alpha), args, workdir


@guarded_main
def main(argv=None) -> int:
    """The ``tools/web_demo.py`` command line: serve the page until Ctrl-C."""
    try:
        app, args, workdir = create_app(argv)
    except ImportError as e:  # no Gradio: the one line says how to install it
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        launch(app, host=args.host, port=args.port, workdir=workdir, block=True)
    finally:
        app.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
