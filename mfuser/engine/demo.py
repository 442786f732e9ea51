"""Segment images, a video or a webcam stream and write colour overlays: the logic behind ``tools/demo.py``.

    python tools/demo.py --config-file CFG --input 'street/*.jpg' --output out/ train.init_checkpoint=model.pth
    python tools/demo.py --config-file CFG --video-input drive.mp4 --output drive_overlay.mp4 train.init_checkpoint=...
    python tools/demo.py --config-file CFG --webcam --output cam.mp4 [--max-frames 300] train.init_checkpoint=...

The vocabulary and colours come from the metadata of ``--dataset`` (default: the first of ``dataloader.targets``);
images are resized like that dataset's test loader (``--resize LONG SHORT`` overrides the keep-ratio edge sizes);
the model's own inference (sliding window) runs on the resized image and the result is at the original size
(:class:`mfuser.engine.MFuserPredictor`). The demo refuses to run without trained weights
(``train.init_checkpoint=PATH``) unless ``--allow-random-weights`` is given.

Images: every bit depth and colour mode PIL or OpenCV decode is converted to 8-bit RGB (:func:`read_image_rgb`);
when two inputs have the same name, outputs keep the inputs' paths relative to their common folder, so no output
replaces another (:func:`output_stems`); unreadable inputs are reported by name and skipped (exit status 1 if any
failed).
Video / webcam: one overlaid video with the input's frame rate and size (:func:`run_video`; codecs in
:data:`VIDEO_CODECS`); a frame that cannot be decoded is reported and skipped. Usage errors exit with status 2.
See docs/demo.md.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, List, Sequence

import numpy as np
from PIL import Image

from mfuser.utils.cli import UsageError, add_debug_argument, guarded_main
from mfuser.utils.io import atomic_write

__all__ = ["IMAGE_EXTS", "VIDEO_CODECS", "VideoReport", "add_model_arguments", "build_predictor", "expand_inputs",
           "get_parser", "main", "output_stems", "predict_labels", "read_image_rgb", "run_demo", "run_video"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Output extension -> FourCC that the FFmpeg inside the opencv-python(-headless) wheels can write. Those wheels carry
#: no H.264 encoder (``avc1`` fails to open), so ``.mp4`` gets MPEG-4 Part 2 (``mp4v``: plays in VLC, mpv and
#: ffmpeg-based players, not in web browsers); ``.webm`` gets VP8, which browsers play (about 6x slower to encode).
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
_MAX_BAD_FRAMES_IN_A_ROW = 50  # after this many undecodable frames in a row, the stream counts as ended
_OVERRIDE = re.compile(r"^\+{0,2}[A-Za-z_][\w.\[\]]*=")


# ---------------------------------------------------------------------------------------------------- reading images
class UnsupportedImageError(ValueError):
    """A decodable image whose content has no faithful 8-bit RGB version (e.g. float values outside [0, 1])."""


def _to_uint8(array: np.ndarray, path: str, what: str) -> np.ndarray:
    """Scale an integer or float image of any bit depth to uint8: 16-bit by 255/65535, float from [0, 1]."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "ui":  # 16-bit (PIL's I;16* modes, OpenCV's CV_16U) and PIL's 32-bit "I" holding 16 bits
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise UnsupportedImageError(f"{path}: {what} with integer values in [{lo}, {hi}]; expected an 8- or "
                                        "16-bit image (values in [0, 65535])")
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if array.dtype.kind == "f":
        finite = np.isfinite(array).all()
        lo, hi = (float(np.nanmin(array)), float(np.nanmax(array))) if array.size else (0.0, 0.0)
        if not finite or lo < 0.0 or hi > 1.0:
            raise UnsupportedImageError(f"{path}: {what} with float values in [{lo:g}, {hi:g}]"
                                        f"{'' if finite else ' (and NaN/inf)'}; expected values in [0, 1]")
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise UnsupportedImageError(f"{path}: {what} of type {array.dtype} cannot be shown as an 8-bit RGB image")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _pil_to_rgb(image: Image.Image, path: str) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit gray: PIL's convert("RGB") clips at 255 instead of scaling
        return _gray_to_rgb(_to_uint8(np.asarray(image), path, f"{mode} image"))
    try:
        return np.asarray(image.convert("RGB"))  # P, 1, L, LA, PA, RGBA (alpha dropped), CMYK, YCbCr, LAB, HSV
    except ValueError as e:
        raise UnsupportedImageError(f"{path}: colour mode {mode!r} has no RGB conversion ({e})") from None


def _read_with_opencv(path: str) -> np.ndarray | None:
    """Formats PIL does not read (e.g. 16-bit TIFF variants, PFM, HDR): BGR(A)/gray of any depth -> uint8 RGB."""
    import cv2

    try:
        array = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # e.g. a codec compiled in but disabled (OpenEXR)
        return None
    if array is None:
        return None
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    elif array.ndim == 3:
        array = array[:, :, 0]
    array = _to_uint8(array, path, f"{array.dtype} image (OpenCV)")
    return _gray_to_rgb(array) if array.ndim == 2 else np.ascontiguousarray(array)


def read_image_rgb(path: str) -> np.ndarray:
    """Read any image PIL or OpenCV can decode as (H, W, 3) uint8 RGB, as the model expects.

    PIL first, with detectron2's ``read_image`` conventions (EXIF orientation applied, the first frame of a multi-frame
    file, alpha dropped); 16-bit gray (``I;16*``, and ``I`` within [0, 65535]) is scaled by 255/65535 and float
    (``F``) from [0, 1] (PIL itself would clip both at 255); every other mode goes through ``convert("RGB")``.
    Files PIL cannot decode go to ``cv2.imdecode(IMREAD_UNCHANGED)`` with the same scaling.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an image either library decodes, or content with no faithful 8-bit RGB version (float
            values outside [0, 1], negative or 32-bit integer values); the message names the file.
    """
    from detectron2.data.detection_utils import _apply_exif_orientation

    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such image file", path)
    try:
        with Image.open(path) as image:
            return _pil_to_rgb(_apply_exif_orientation(image), path)
    except UnsupportedImageError:
        raise
    except Image.DecompressionBombError as e:
        raise UnsupportedImageError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL cannot identify or decode it: try OpenCV
        pil_error = f"{type(e).__name__}: {e}"
    rgb = _read_with_opencv(path)
    if rgb is None:
        raise ValueError(f"cannot decode image {path}: neither PIL ({pil_error}) nor OpenCV can read it")
    return rgb


# ------------------------------------------------------------------------------------------------------- images
def expand_inputs(items: Iterable[str]) -> List[str]:
    """Files from paths, directories (images inside, sorted) and glob patterns (``**`` recursive), each file once;
    unknown paths are kept so that they are reported as failures."""
    files, seen = [], set()
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if os.path.isfile(os.path.join(item, f)) and f.lower().endswith(IMAGE_EXTS))
        elif any(c in item for c in "*?["):
            found = sorted(glob.glob(item, recursive=True)) or [item]
        else:
            found = [item]
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def output_stems(files: Sequence[str]) -> List[str]:
    """One distinct output stem per input, so that no output replaces another.

    The file names without extension when they are all different (ignoring case, for case-insensitive file
    systems): ``a/x.png, b/y.png`` -> ``x, y``. Otherwise every input's path relative to the inputs' common folder:
    ``a/x.png, b/x.png`` -> ``a/x, b/x``; inputs that differ only by extension keep it (``x.png, x.jpg`` ->
    ``x_png, x_jpg``); a name still taken gets ``_2``, ``_3``, ...
    """
    if not files:
        return []
    absolute = [os.path.abspath(f) for f in files]
    names = [os.path.splitext(os.path.basename(a))[0] for a in absolute]
    if len({n.casefold() for n in names}) == len(names):
        return names
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    split = [os.path.splitext(os.path.relpath(a, root)) for a in absolute]
    clash = Counter(stem for stem, _ in split)
    names = [f"{stem}_{ext.lstrip('.')}" if clash[stem] > 1 and ext else stem for stem, ext in split]
    taken, out = set(), []
    for name in names:
        candidate, k = name, 2
        while candidate.casefold() in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def predict_labels(predictor, rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 trainIds, giving the predictor the colour order it declares
    (``predictor.input_format``, "RGB" when it declares none)."""
    fmt = str(getattr(predictor, "input_format", "RGB")).upper()
    if fmt not in ("RGB", "BGR"):
        raise ValueError(f"the demo feeds RGB or BGR images; the predictor expects {fmt!r}")
    out = predictor(np.ascontiguousarray(rgb[:, :, ::-1]) if fmt == "BGR" else rgb)
    if hasattr(out, "labels"):  # MFuserPredictor's Prediction
        return out.labels()
    return out["sem_seg"].argmax(0).numpy().astype(np.uint8)


def _write_png(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"), suffix=".png")


def run_demo(predictor, files: Sequence[str], output: str, *, alpha: float = 0.6, save_labels: bool = False,
             progress: bool = True) -> List[str]:
    """Predict every file and write ``<stem>_overlay.png`` (and ``<stem>_labelTrainIds.png``, uint8 trainIds at the
    image's size) under ``output``, ``<stem>`` from :func:`output_stems` (sub-folders are created). Every file is
    written atomically.

    Args:
        predictor: an :class:`mfuser.engine.MFuserPredictor` with metadata (``predictor.metadata``).
        files: image paths (:func:`read_image_rgb`); unreadable ones are reported on stderr and skipped.

    Returns:
        the files that failed; every other file has its own output(s).
    """
    from tqdm import tqdm

    from mfuser.utils.visualizer import draw_overlay

    os.makedirs(output, exist_ok=True)
    failed = []
    for path, stem in tqdm(list(zip(files, output_stems(files))), desc="demo", unit="img", disable=not progress):
        try:
            image = read_image_rgb(path)
        except Exception as e:  # noqa: BLE001 - any decoding failure: report and skip this input
            failed.append(path)
            tqdm.write(f"skipped {path}: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        labels = predict_labels(predictor, image)
        _write_png(os.path.join(output, f"{stem}_overlay.png"), draw_overlay(image, labels, predictor.metadata, alpha))
        if save_labels:
            _write_png(os.path.join(output, f"{stem}_labelTrainIds.png"), labels)
    return failed


# -------------------------------------------------------------------------------------------------------- video
@dataclass
class VideoReport:
    """What :func:`run_video` wrote: ``frames`` overlaid frames of ``width`` x ``height`` at ``fps`` in ``output``
    (FourCC ``codec``); ``skipped``: indices of frames that could not be decoded; ``model_seconds``: per written
    frame, the predictor's time; ``seconds``: wall time of the whole run (decoding, blending and encoding included);
    ``class_pixels``: (K + 1,) pixel count per class over all frames, the last entry for no class (ignore)."""

    output: str
    codec: str
    fps: float
    width: int = 0
    height: int = 0
    frames: int = 0
    skipped: List[int] = field(default_factory=list)
    model_seconds: List[float] = field(default_factory=list)
    seconds: float = 0.0
    class_pixels: np.ndarray | None = None
    interrupted: bool = False
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: frames, size, fps, codec, skipped frames, per-frame model time and end-to-end speed."""
        ms = 1000 * np.asarray(self.model_seconds) if self.model_seconds else np.zeros(1)
        line = (f"{self.frames} frame(s) written to {self.output} ({self.width}x{self.height}, {self.fps:g} fps, "
                f"{self.codec}); model {ms.mean():.1f} ms/frame (min {ms.min():.1f}, max {ms.max():.1f}); "
                f"{self.frames / max(self.seconds, 1e-9):.2f} frames/s end to end ({self.seconds:.1f} s)")
        if self.skipped:
            line += f"; {len(self.skipped)} undecodable frame(s) skipped: {self.skipped}"
        return line + "".join(f"; {n}" for n in self.notes) + ("; stopped by Ctrl-C" if self.interrupted else "")


def open_video(source: str | int):
    """``cv2.VideoCapture`` of a file or a camera index, opened, or one clear error (FileNotFoundError/ValueError)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's per-packet warnings: we report frames ourselves
    import cv2

    if isinstance(source, int):
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # each backend warns when it finds none
        try:
            cap = cv2.VideoCapture(source)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            raise ValueError(f"no camera: cv2.VideoCapture({source}) could not open camera {source} "
                             "(none connected, no permission on /dev/video*, or OpenCV built without camera support)")
        return cap
    if not os.path.isfile(source):
        raise FileNotFoundError(2, "No such video file", source)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ValueError(f"cannot open video {source}: OpenCV's FFmpeg cannot decode it, or it has zero frames")
    return cap


def _frames(cap, expected: int, report: VideoReport, max_frames: int | None):
    """Yield (index, BGR frame) in order. A failed read followed by a good one is an undecodable frame (FFmpeg
    resumes after it): reported on stderr and added to ``report.skipped``; failed reads at the end are the end."""
    from tqdm import tqdm

    index, found, pending = 0, 0, []
    while max_frames is None or index < max_frames:
        ok, frame = cap.read()
        if ok and frame is not None and frame.size:
            for bad in pending:
                tqdm.write(f"skipped frame {bad}: it could not be decoded", file=sys.stderr)
            report.skipped += pending
            found += len(pending) + 1
            pending = []
            yield index, frame
        else:
            pending.append(index)
            if (expected > 0 and index >= expected - 1) or len(pending) >= _MAX_BAD_FRAMES_IN_A_ROW:
                break
        index += 1
    if max_frames is None and expected > 0 and found != expected:
        report.notes.append(f"the container announced {expected} frames, {found} were found")


def run_video(predictor, source: str | int, output: str, *, alpha: float = 0.6, codec: str | None = None,
              max_frames: int | None = None, progress: bool = True, stop_on_interrupt: bool = False) -> VideoReport:
    """Segment a video file (or camera ``source``: an int) frame by frame, in order, and write the overlaid video.

    The output has the input's frame rate (30 when the input declares none) and frame size, FourCC ``codec``
    (default from the extension, :data:`VIDEO_CODECS`), and is written atomically (temporary file, then rename): a
    failure leaves no partial file. Undecodable frames are reported on stderr and skipped (the others keep their
    order); a frame of another size than the first is skipped the same way. A progress bar shows the model time of
    the last frame.

    Args:
        predictor: as in :func:`run_demo`.
        alpha: overlay opacity (:func:`mfuser.utils.visualizer.blend_overlay`).
        max_frames: stop after this many frames (read, decodable or not).
        stop_on_interrupt: Ctrl-C ends the stream and keeps what was written (for cameras); otherwise it aborts
            and nothing is written.

    Raises:
        FileNotFoundError / ValueError: the video cannot be opened, has zero decodable frames, or the codec cannot
            be written into ``output``'s container.
    """
    import cv2
    from tqdm import tqdm

    from mfuser.utils.visualizer import blend_overlay

    ext = os.path.splitext(output)[1].lower()
    codec = codec or VIDEO_CODECS.get(ext)
    if codec is None or len(codec) != 4:
        raise UsageError(f"--output {output!r}: expected a video file ending in one of {sorted(VIDEO_CODECS)} "
                         f"(or --codec FOURCC), got {ext or 'no extension'!r}")
    cap = open_video(source)
    fps = cap.get(cv2.CAP_PROP_FPS)
    report = VideoReport(output=output, codec=codec, fps=fps if 0 < fps < 1000 else 30.0)
    if report.fps != fps:
        report.notes.append(f"the input declares no frame rate ({fps:g}): written at 30 fps")
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(source, str) else 0
    num_classes = len(predictor.metadata.stuff_classes)
    report.class_pixels = np.zeros(num_classes + 1, np.int64)
    start = time.perf_counter()

    def write(tmp: str) -> None:
        writer = None
        total = min(expected, max_frames or expected) if expected > 0 else max_frames
        bar = tqdm(total=total, desc="video", unit="frame", disable=not progress)
        try:
            for index, frame in _frames(cap, expected, report, max_frames):
                if writer is None:
                    report.height, report.width = frame.shape[:2]
                    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), report.fps,
                                             (report.width, report.height))
                    if not writer.isOpened():
                        raise ValueError(f"OpenCV cannot write {codec} video into {output!r}; "
                                         f"use one of {', '.join(f'{e} ({c})' for e, c in VIDEO_CODECS.items())}")
                if frame.shape[:2] != (report.height, report.width) or frame.ndim != 3:
                    report.skipped.append(index)
                    tqdm.write(f"skipped frame {index}: size {frame.shape[1]}x{frame.shape[0]} differs from the "
                               f"first frame's {report.width}x{report.height}", file=sys.stderr)
                    bar.update(index + 1 - bar.n)
                    continue
                rgb = np.ascontiguousarray(frame[:, :, ::-1])
                t0 = time.perf_counter()
                labels = predict_labels(predictor, rgb)
                report.model_seconds.append(time.perf_counter() - t0)
                report.class_pixels += np.bincount(labels.ravel().clip(0, num_classes), minlength=num_classes + 1)
                writer.write(np.ascontiguousarray(blend_overlay(rgb, labels, predictor.metadata, alpha)[:, :, ::-1]))
                report.frames += 1
                bar.set_postfix_str(f"{1000 * report.model_seconds[-1]:.0f} ms/frame", refresh=False)
                bar.update(index + 1 - bar.n)  # frames done (skipped ones included)
        except KeyboardInterrupt:
            if not stop_on_interrupt or writer is None:
                raise
            report.interrupted = True
        finally:
            bar.close()
            if writer is not None:
                writer.release()
            cap.release()
        if report.frames == 0:
            where = f"camera {source}" if isinstance(source, int) else f"video {source}"
            raise ValueError(f"{where} has zero readable frames" + (f" ({report.notes[0]})" if report.notes else ""))

    atomic_write(output, write, suffix=ext)
    report.seconds = time.perf_counter() - start
    return report


# ---------------------------------------------------------------------------------------------------------- CLI
def add_model_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options that choose the model (shared with ``tools/web_demo.py``): config, dataset, resize, weights."""
    p.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    p.add_argument("--dataset", default=None, help="dataset whose metadata gives class names and colours")
    p.add_argument("--resize", type=int, nargs=2, default=None, metavar=("LONG", "SHORT"),
                   help="keep-ratio test resize (default: dataloader.test_resize of --dataset)")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="run even without train.init_checkpoint (untrained model: the output is meaningless)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                   help="config overrides KEY=VALUE (alias of the positional overrides)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as in the other tools")
    return add_debug_argument(p)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, directories or glob patterns")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", action="store_true", help="camera --camera (default 0) until Ctrl-C")
    p.add_argument("--output", required=True,
                   help="output directory for images; a video file (.mp4, .avi, .webm, ...) or a directory for video")
    p.add_argument("--save-labels", action="store_true", help="images: also write <name>_labelTrainIds.png")
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity in [0, 1]")
    p.add_argument("--camera", type=int, default=0, metavar="INDEX", help="camera index for --webcam")
    p.add_argument("--codec", default=None, metavar="FOURCC", help="video codec (default: from the output extension)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="video / webcam: stop after N frames")
    return add_model_arguments(p)


def build_predictor(args):
    """An :class:`MFuserPredictor` from parsed :func:`add_model_arguments` options (strict overrides; trained weights
    required unless ``--allow-random-weights``)."""
    from types import SimpleNamespace

    import torch

    import mfuser.data  # noqa: F401  (registers datasets)
    from mfuser.evaluation import check_registered

    from .defaults import load_config
    from .predictor import MFuserPredictor

    cfg = load_config(SimpleNamespace(config_file=args.config_file, opts=[*args.overrides, *args.opts]))
    targets = list(cfg.dataloader.get("targets", []) or []) if "dataloader" in cfg else []
    dataset = args.dataset or (targets[0] if targets else None)
    if dataset is None:
        raise UsageError("--dataset is needed (the config has no dataloader.targets)")
    try:
        check_registered([dataset])
    except KeyError as e:
        raise UsageError(e.args[0] if e.args else str(e)) from None
    train = cfg.get("train", {}) or {}
    weights = str(train.get("init_checkpoint", "") or "")
    if not weights and not args.allow_random_weights:
        raise UsageError("no trained weights: give train.init_checkpoint=PATH (a checkpoint of this config), or "
                         "--allow-random-weights to run the untrained model (its output is meaningless)")
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise UsageError(f"train.init_checkpoint: no such file: {weights!r}")
    if not weights:
        print("warning: no train.init_checkpoint: running with random weights (the output is meaningless)",
              file=sys.stderr)
    device = str(train.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    # the demo reads every image and frame as RGB (read_image_rgb; video frames converted from OpenCV's BGR)
    return MFuserPredictor(cfg, dataset=dataset, device=device, resize_to=args.resize, input_format="RGB")


@guarded_main
def main(argv=None) -> int:
    """The ``tools/demo.py`` command line; returns the exit status."""
    args = get_parser().parse_args(argv)
    # "--input a.png KEY=VALUE": argparse gives the override to --input (nargs="+"); a KEY=VALUE that is not a
    # file is an override wherever it stands
    if args.input:
        moved = [item for item in args.input if _OVERRIDE.match(item) and not os.path.exists(item)]
        args.input = [item for item in args.input if item not in moved]
        args.overrides = [*moved, *args.overrides]
    if not os.path.isfile(args.config_file):
        raise UsageError(f"--config-file: no such file: {args.config_file!r}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be positive, got {args.max_frames}")
    if args.input is not None:
        files = expand_inputs(args.input)
        if not files:
            raise UsageError(f"--input matched no files: {args.input}")
    else:
        source = args.camera if args.webcam else args.video_input
        output = args.output
        if os.path.isdir(output) or output.endswith(os.sep):
            stem = f"camera{args.camera}" if args.webcam else os.path.splitext(os.path.basename(source))[0]
            output = os.path.join(output, f"{stem}_overlay.mp4")
        if not args.webcam and os.path.exists(output) and os.path.samefile(output, source):
            raise UsageError(f"--output {output!r} is the input video")
        if not args.webcam and not os.path.isfile(source):
            raise UsageError(f"--video-input: no such file: {source!r}")
        if os.path.splitext(output)[1].lower() not in VIDEO_CODECS and not args.codec:
            raise UsageError(f"--output {output!r}: expected a video file ending in one of {sorted(VIDEO_CODECS)} "
                             "(or a directory, or --codec FOURCC)")

        open_video(source).release()  # an unreadable video or a missing camera fails before the model loads
    predictor = build_predictor(args)
    if args.input is not None:
        failed = run_demo(predictor, files, args.output, alpha=args.alpha, save_labels=args.save_labels)
        done = len(files) - len(failed)
        print(f"{done} image(s) written to {args.output}" + (f"; {len(failed)} failed: {failed}" if failed else ""))
        return 1 if failed else 0
    report = run_video(predictor, source, output, alpha=args.alpha, codec=args.codec, max_frames=args.max_frames,
                       stop_on_interrupt=args.webcam)
    print(report.summary())
    return 1 if report.skipped else 0
