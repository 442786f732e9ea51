"""The training augmentations of the official recipe that detectron2 does not provide.

The recipe: docs/reference.md, "Training recipe", "Test-time resize".

* :class:`ResizeByRatio`: resize by a random ratio of the image's **native** size (mmseg ``Resize`` with
  ``img_scale=None, ratio_range=...``); detectron2's ``ResizeScale`` scales relative to a fixed target box.
* :class:`PhotoMetricDistortion`: mmseg's photometric distortion (random brightness, contrast, saturation,
  hue, each with probability 0.5, contrast before or after the HSV steps); detectron2's ``RandomBrightness``
  etc. are multiplicative and always applied.
* :class:`PadToSize`: pad bottom/right to a fixed size with separate image and label fill values
  (detectron2 only pads inside ``FixedSizeCrop``); images are filled per channel with :data:`IMAGE_PAD_RGB`.
* :class:`ResizeKeepRatio`: the test-time keep-ratio resize (mmseg ``Resize(img_scale, keep_ratio=True)``);
  detectron2's ``ResizeShortestEdge`` fits the short edge only. The evaluation mapper and the demo's
  predictor both use it, so they feed the model the same pixels.

Like detectron2's augmentations, they draw their random parameters from numpy's global RNG in
``get_transform`` (seeded per worker by detectron2's data loader) and return deterministic ``Transform``s.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import NoOpTransform, PadTransform, Transform
from open_clip.constants import OPENAI_DATASET_MEAN
from PIL import Image

__all__ = [
    "ResizeByRatio",
    "PhotoMetricDistortion",
    "PhotoMetricDistortionTransform",
    "IMAGE_PAD_RGB",
    "PadToSize",
    "PerChannelPadTransform",
    "keep_ratio_fit",
    "ResizeKeepRatio",
]

#: Fill colour (RGB, 0-255 floats) of padded image pixels, in training crops and in the model. The reference
#: pads *after* normalising with the OpenAI-CLIP mean/std, with 0, i.e. with the mean colour; padding the
#: unnormalised image with ``255 * mean`` gives the same (zero) values after that normalisation.
IMAGE_PAD_RGB = tuple(255.0 * m for m in OPENAI_DATASET_MEAN)


class ResizeByRatio(T.Augmentation):
    """Resize to ``round(ratio * (H, W))`` with ``ratio ~ U(ratio_range)`` (bilinear image, nearest label)."""

    def __init__(self, ratio_range: Tuple[float, float] = (0.5, 2.0), interp: int = Image.BILINEAR):
        super().__init__()
        lo, hi = ratio_range
        if not 0 < lo <= hi:
            raise ValueError(f"ratio_range: expected 0 < low <= high, got {ratio_range}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        ratio = np.random.uniform(self.ratio_range[0], self.ratio_range[1])
        new_h, new_w = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
        return T.ResizeTransform(h, w, new_h, new_w, self.interp)


class PhotoMetricDistortionTransform(Transform):
    """Apply a sampled photometric distortion to a uint8 (H, W, 3) image; labels and coordinates unchanged.

    Args:
        brightness: additive delta, or None to skip.
        contrast: multiplicative factor, or None to skip.
        saturation: factor on the HSV saturation channel, or None to skip.
        hue: additive shift of the OpenCV hue channel (0..179), or None to skip.
        contrast_first: apply contrast before (True) or after (False) saturation and hue.
        image_format: "RGB" or "BGR" (the channel order of the image).
    """

    def __init__(
        self,
        brightness: float | None,
        contrast: float | None,
        saturation: float | None,
        hue: int | None,
        contrast_first: bool,
        image_format: str = "RGB",
    ):
        super().__init__()
        self._set_attributes(locals())

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _hsv(self, img: np.ndarray, fn) -> np.ndarray:
        to_hsv, from_hsv = (
            (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)
            if self.image_format == "RGB"
            else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
        )
        hsv = cv2.cvtColor(img, to_hsv)
        fn(hsv)
        return cv2.cvtColor(hsv, from_hsv)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"PhotoMetricDistortion expects a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
        if self.brightness is not None:
            img = self._convert(img, beta=self.brightness)
        if self.contrast_first and self.contrast is not None:
            img = self._convert(img, alpha=self.contrast)
        if self.saturation is not None:

            def sat(hsv):
                hsv[..., 1] = self._convert(hsv[..., 1], alpha=self.saturation)

            img = self._hsv(img, sat)
        if self.hue is not None:

            def hue(hsv):
                hsv[..., 0] = (hsv[..., 0].astype(np.int32) + self.hue) % 180

            img = self._hsv(img, hue)
        if not self.contrast_first and self.contrast is not None:
            img = self._convert(img, alpha=self.contrast)
        return img

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def inverse(self) -> Transform:
        return NoOpTransform()


class PhotoMetricDistortion(T.Augmentation):
    """mmseg's ``PhotoMetricDistortion``: brightness ``U(-32, 32)``, contrast ``U(0.5, 1.5)``, saturation
    ``U(0.5, 1.5)``, hue shift ``randint(-18, 18)`` (upper bound exclusive, as in mmseg), each applied with
    probability 0.5; contrast goes first or last with probability 0.5."""

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        image_format: str = "RGB",
    ):
        super().__init__()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format: PhotoMetricDistortion supports 'RGB' or 'BGR', got {image_format!r}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        r = np.random
        brightness = r.uniform(-self.brightness_delta, self.brightness_delta) if r.randint(2) else None
        contrast_first = bool(r.randint(2))
        contrast = r.uniform(*self.contrast_range) if r.randint(2) else None
        saturation = r.uniform(*self.saturation_range) if r.randint(2) else None
        hue = int(r.randint(-self.hue_delta, self.hue_delta)) if r.randint(2) else None
        return PhotoMetricDistortionTransform(brightness, contrast, saturation, hue, contrast_first, self.image_format)


class PerChannelPadTransform(PadTransform):
    """fvcore's ``PadTransform`` with an image fill of one value per channel (``np.pad`` takes one value).

    ``pad_value``: a number or one value per channel, in the image's channel order; for uint8 images it is
    rounded (and clipped to 0..255). Labels are padded with ``seg_pad_value`` as in ``PadTransform``.
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        fill = np.asarray(self.pad_value, dtype=np.float64).reshape(-1)
        channels = img.shape[2] if img.ndim == 3 else 1
        if fill.size not in (1, channels):
            raise ValueError(f"pad_value: expected 1 or {channels} values for a {img.shape} image, got {fill.size}")
        if img.dtype == np.uint8:
            fill = np.clip(np.round(fill), 0, 255)
        h, w = img.shape[:2]
        out = np.empty((self.y0 + h + self.y1, self.x0 + w + self.x1) + img.shape[2:], img.dtype)
        out[...] = fill.astype(img.dtype) if img.ndim == 3 else fill[0]
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


class PadToSize(T.Augmentation):
    """Pad bottom/right up to ``size = (height, width)``; the image with ``pad_value`` (a number or one value per
    channel, in the image's channel order; default :data:`IMAGE_PAD_RGB`, for RGB images) and the label with
    ``seg_pad_value`` (255 = ignore). Images already at least that large are left unchanged."""

    def __init__(
        self, size: Sequence[int], pad_value: float | Sequence[float] = IMAGE_PAD_RGB, seg_pad_value: int = 255
    ):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.pad_value, self.seg_pad_value = pad_value, seg_pad_value

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        ph, pw = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        if ph == 0 and pw == 0:
            return NoOpTransform()
        return PerChannelPadTransform(
            0, 0, pw, ph, orig_w=w, orig_h=h, pad_value=self.pad_value, seg_pad_value=self.seg_pad_value
        )


def keep_ratio_fit(height: int, width: int, scale: Sequence[int] | None) -> Tuple[int, int]:
    """Size ``(h, w)`` of an image rescaled, aspect kept, to fit ``scale = (long, short)`` edges.

    The mmseg ``Resize(img_scale=(2048, 1024), keep_ratio=True)`` rule: factor
    ``min(long / max(h, w), short / min(h, w))`` (it may up-scale), sizes rounded half up.
    ``scale=None`` keeps the size.
    """
    if scale is None:
        return int(height), int(width)
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class ResizeKeepRatio(T.Augmentation):
    """Test-time resize to :func:`keep_ratio_fit` of ``scale = (long, short)`` (PIL bilinear for uint8 images,
    detectron2's ``ResizeTransform``); a no-op when ``scale`` is None or the size does not change.

    Used by :class:`~mfuser.data.mappers.MFuserTestDatasetMapper` and by the demo's predictor (``MFuserPredictor``).
    """

    def __init__(self, scale: Sequence[int] | None, interp: int = Image.BILINEAR):
        super().__init__()
        if scale is not None:
            if len(scale) != 2 or min(scale) <= 0:
                raise ValueError(f"resize_to: expected (long, short) positive sizes or None, got {scale}")
            scale = (int(max(scale)), int(min(scale)))
        self.scale, self.interp = scale, interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        new_h, new_w = keep_ratio_fit(h, w, self.scale)
        if (new_h, new_w) == (h, w):
            return NoOpTransform()
        return T.ResizeTransform(h, w, new_h, new_w, self.interp)
