"""Single-image inference for LazyConfig models: the counterpart of detectron2's ``DefaultPredictor``.

Detectron2's ``DefaultPredictor`` reads a yacs config (``cfg.INPUT.*``, ``MODEL.DEVICE``); this one reads a
LazyConfig: ``instantiate(cfg.model)``, strict checkpoint load (published MFuser files included), the test-time
resize the evaluation loader applies to the chosen dataset, and that dataset's metadata (class names, colours).
The model is called with the original ``height`` / ``width``, so it returns its prediction at the original size
(sliding-window inference is the model's job).

    predictor = MFuserPredictor(cfg, dataset="cityscapes_val", weights="model_final.pth", input_format="BGR")
    out = predictor(cv2.imread("street.jpg"))        # {"sem_seg": Tensor[K, H, W]}, a Prediction
    labels = out.labels()                            # (H, W) uint8 trainIds (names: predictor.metadata.stuff_classes)
    overlay = out.overlay(alpha=0.6)                 # (H, W, 3) uint8 RGB, the class colours over the image

Colour order, as detectron2's ``DefaultPredictor``: the predictor takes images in ``input_format`` ("RGB" or "BGR"),
by default the format the config's evaluation loader reads images in (``dataloader.test.mapper.image_format``: "RGB"
in every MFuser config), or "BGR" (``cv2.imread``, detectron2's default ``cfg.INPUT.FORMAT``) when the config
declares none; it converts them to the order the model takes (that same config value, else "RGB", the order of the
MFuser models). The channel order of an image cannot be told from its pixels: pass the right ``input_format``
(``predictor.input_format`` says what it takes).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from omegaconf import OmegaConf

from mfuser.data.transforms import ResizeKeepRatio

from .checkpoint import MFuserCheckpointer
from .defaults import resolve_test_resize, target_names
from .precision import announce_precision, precision_from_config, resolve_precision

__all__ = ["COLOR_FORMATS", "MFuserPredictor", "Prediction", "check_image", "config_image_format"]

#: Channel orders the predictor converts between.
COLOR_FORMATS = ("RGB", "BGR")


def _check_format(value, what: str) -> str:
    fmt = str(value).upper()
    if fmt not in COLOR_FORMATS:
        raise ValueError(f"{what}: expected one of {COLOR_FORMATS}, got {value!r}")
    return fmt


def config_image_format(cfg) -> str | None:
    """The colour order the config's evaluation loader reads images in (``dataloader.test.mapper.image_format``,
    upper-cased), or None when the config does not set it."""
    value = OmegaConf.select(cfg, "dataloader.test.mapper.image_format", default=None) if "dataloader" in cfg else None
    return None if value is None else _check_format(value, "dataloader.test.mapper.image_format")


def check_image(image) -> None:
    """Raise ``ValueError`` (what was given and how to convert it) unless ``image`` is an (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray):
        is_pil = hasattr(image, "mode")
        hint = " (a PIL image: np.asarray(img.convert('RGB')) with input_format='RGB')" if is_pil else ""
        raise ValueError(f"expected an (H, W, 3) uint8 numpy array, got {type(image).__name__}{hint}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (values 0..255), got dtype {image.dtype}; convert it first, e.g. "
                         "np.clip(img * 255, 0, 255).round().astype(np.uint8) for floats in [0, 1]")
    if image.ndim == 2:
        raise ValueError(f"expected 3 colour channels (H, W, 3), got a single-channel (H, W) = {image.shape} image; "
                         "repeat it: np.repeat(img[:, :, None], 3, axis=2)")
    if image.ndim != 3 or image.shape[2] != 3:
        hint = ""
        if image.ndim == 3 and image.shape[2] == 4:
            hint = "; drop the alpha channel: img[:, :, :3]"
        elif image.ndim == 3 and image.shape[0] == 3:
            hint = "; channels must come last: img.transpose(1, 2, 0)"
        raise ValueError(f"expected 3 colour channels (H, W, 3), got shape {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")


class Prediction(dict):
    """The model's output dict for one image, ``{"sem_seg": Tensor[K, H, W]}`` (class scores at the original size,
    on the CPU), with helpers to read it.

    Attributes:
        image: the input image as (H, W, 3) uint8 RGB (for :meth:`overlay`; a view of the caller's array, not a copy).
        metadata: the predictor's dataset metadata (``stuff_classes``, ``stuff_colors``), or None.
    """

    def __init__(self, output: dict, *, image: np.ndarray, metadata=None):
        super().__init__(output)
        self.image, self.metadata = image, metadata

    def labels(self) -> np.ndarray:
        """(H, W) uint8 trainIds: the highest-scoring class of each pixel."""
        return self["sem_seg"].argmax(0).to(torch.uint8).numpy()

    def overlay(self, alpha: float = 0.6, *, legend: bool = False) -> np.ndarray:
        """The class colours of :meth:`labels` blended over the image (:mod:`mfuser.utils.visualizer`).

        Args:
            alpha: opacity of the colours, in [0, 1].
            legend: False: (H, W, 3), the image's size; True: detectron2's drawing with the class names on the
                regions and a legend of the classes present (with their area) appended below.
        Returns:
            uint8 RGB array.
        """
        from mfuser.utils.visualizer import blend_overlay, draw_overlay

        if self.metadata is None:
            raise ValueError("overlay needs class colours: build the MFuserPredictor with dataset=NAME (a registered "
                             "dataset) or a config with dataloader.targets")
        draw = draw_overlay if legend else blend_overlay
        return draw(self.image, self.labels(), self.metadata, alpha)


class MFuserPredictor:
    """Build a model from a LazyConfig, load weights, predict one image.

    Args:
        cfg: LazyConfig with ``cfg.model`` (and ``cfg.train`` / ``cfg.dataloader`` for the defaults below).
        dataset (str or None): registered dataset whose metadata describes the output (``self.metadata``) and
            whose ``dataloader.test_resize`` entry gives the test resize. Default: the first of
            ``dataloader.targets``; None when the config has none (then no metadata and no resize).
        weights (str or None): checkpoint path; ``None`` uses ``cfg.train.init_checkpoint`` (may be empty: then
            the model keeps the weights it was built with, useful only for smoke tests).
        device (str or None): overrides ``cfg.train.device``.
        resize_to ((long, short) or None): overrides the dataset's test-time keep-ratio resize
            (:class:`mfuser.data.transforms.ResizeKeepRatio`, the evaluation mapper's), so the model sees the same
            pixels as in evaluation.
        input_format (str or None): the channel order of the images given to the call, "RGB" or "BGR". Default:
            the config's ``dataloader.test.mapper.image_format`` ("RGB" in the MFuser configs), else "BGR" as
            detectron2's ``DefaultPredictor``. Images are converted to ``self.model_format`` (that config value,
            else "RGB") before the model sees them.
        precision (str or None): "auto", "fp32" or "bf16"; overrides ``cfg.train.precision`` (the policy of
            :mod:`mfuser.engine.precision`: on a CPU with native bf16, "auto" runs the model under bf16 autocast).
            The resolved choice is ``self.precision``.

    Call: ``predictor(image)`` with ``image`` an ``(H, W, 3)`` uint8 array in ``input_format`` (anything else is
    refused with a ``ValueError`` saying how to convert it) -> a :class:`Prediction`: the model's output dict
    ``{"sem_seg": Tensor[K, H, W]}`` (class scores at the original size, on the CPU) with ``.labels()`` (the (H, W)
    uint8 trainId map) and ``.overlay()`` (the coloured overlay).
    """

    def __init__(self, cfg, *, dataset: str | None = None, weights: str | None = None, device: str | None = None,
                 resize_to: Sequence[int] | None = None, input_format: str | None = None,
                 precision: str | None = None):
        if dataset is None and "dataloader" in cfg:
            targets = target_names(cfg)
            dataset = targets[0] if targets else None
        self.dataset = dataset
        self.metadata = MetadataCatalog.get(dataset) if dataset is not None else None
        if resize_to is None and dataset is not None and "dataloader" in cfg:
            resize_to = resolve_test_resize(cfg, dataset)
        self.resize_to = tuple(resize_to) if resize_to is not None else None
        self.resize = ResizeKeepRatio(resize_to)
        declared = config_image_format(cfg)
        self.input_format = _check_format(input_format or declared or "BGR", "input_format")
        self.model_format = declared or "RGB"
        train = cfg.get("train", {}) or {}
        self.device = torch.device(device or train.get("device", "cpu"))
        if precision is None:
            self.precision = precision_from_config(cfg, self.device)
        else:
            self.precision = resolve_precision(precision, self.device)
        announce_precision(self.precision)
        self.model = instantiate(cfg.model).to(self.device).eval()
        weights = train.get("init_checkpoint", "") if weights is None else weights
        if weights:
            MFuserCheckpointer(self.model).load(weights)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Prediction:
        """(H, W, 3) uint8 in ``input_format`` -> :class:`Prediction` ``{"sem_seg": Tensor[K, H, W]}`` on the CPU."""
        check_image(image)
        rgb = image if self.input_format == "RGB" else image[:, :, ::-1]
        if self.input_format != self.model_format:
            image = np.ascontiguousarray(image[:, :, ::-1])
        height, width = image.shape[:2]
        image = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        inputs = {"image": tensor.to(self.device), "height": height, "width": width}
        with self.precision.autocast():
            out = self.model([inputs])[0]
        return Prediction({"sem_seg": out["sem_seg"].float().cpu()}, image=rgb, metadata=self.metadata)
