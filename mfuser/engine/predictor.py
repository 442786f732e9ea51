"""Single-image inference for LazyConfig models: the counterpart of detectron2's ``DefaultPredictor``.

Detectron2's ``DefaultPredictor`` reads a yacs config (``cfg.INPUT.*``, ``MODEL.DEVICE``); this one reads a
LazyConfig: ``instantiate(cfg.model)``, strict checkpoint load (published MFuser files included), the test-time
resize the evaluation loader applies to the chosen dataset, and that dataset's metadata (class names, colours).
The model is called with the original ``height`` / ``width``, so it returns its prediction at the original size
(sliding-window inference is the model's job).

    predictor = MFuserPredictor(cfg, dataset="cityscapes_val", weights="model_final.pth")
    out = predictor(rgb_image)                       # {"sem_seg": Tensor[K, H, W]}
    labels = out["sem_seg"].argmax(0)                # trainIds; predictor.metadata.stuff_classes names them
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog

from mfuser.data.transforms import ResizeKeepRatio

from .checkpoint import MFuserCheckpointer
from .defaults import resolve_test_resize, target_names

__all__ = ["MFuserPredictor"]


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

    Call: ``predictor(image)`` with ``image`` a uint8 **RGB** array ``(H, W, 3)`` (the colour order the MFuser
    models take; convert a cv2 / BGR image with ``image[:, :, ::-1]``) -> the model's output dict
    ``{"sem_seg": Tensor[K, H, W]}`` (class scores at the original size, on the CPU).
    """

    def __init__(self, cfg, *, dataset: str | None = None, weights: str | None = None, device: str | None = None,
                 resize_to: Sequence[int] | None = None):
        if dataset is None and "dataloader" in cfg:
            targets = target_names(cfg)
            dataset = targets[0] if targets else None
        self.dataset = dataset
        self.metadata = MetadataCatalog.get(dataset) if dataset is not None else None
        if resize_to is None and dataset is not None and "dataloader" in cfg:
            resize_to = resolve_test_resize(cfg, dataset)
        self.resize_to = tuple(resize_to) if resize_to is not None else None
        self.resize = ResizeKeepRatio(resize_to)
        train = cfg.get("train", {}) or {}
        self.device = torch.device(device or train.get("device", "cpu"))
        self.model = instantiate(cfg.model).to(self.device).eval()
        weights = train.get("init_checkpoint", "") if weights is None else weights
        if weights:
            MFuserCheckpointer(self.model).load(weights)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict:
        """(H, W, 3) uint8 RGB -> ``{"sem_seg": Tensor[K, H, W]}`` on the CPU."""
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"expected an RGB image array (H, W, 3), got {getattr(image, 'shape', type(image))}")
        height, width = image.shape[:2]
        image = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        inputs = {"image": tensor.to(self.device), "height": height, "width": width}
        out = self.model([inputs])[0]
        return {"sem_seg": out["sem_seg"].float().cpu()}
