"""Single-image inference for LazyConfig models (used by ``tools/demo.py``).

Detectron2's ``DefaultPredictor`` reads a yacs config (``cfg.INPUT.*``, ``MODEL.DEVICE``); this is its
LazyConfig counterpart: ``instantiate(cfg.model)``, strict checkpoint load, the test-time resize of the
evaluation mapper, and a call with the original ``height`` / ``width`` so the model returns its
prediction at the original size (sliding-window inference, if any, is the model's job).
"""
from typing import Sequence

import numpy as np
import torch
from detectron2.config import instantiate

from mfuser.data.transforms import ResizeKeepRatio

from .checkpoint import MFuserCheckpointer

__all__ = ["MFuserPredictor"]


class MFuserPredictor:
    """Build a model from a LazyConfig, load weights, predict one RGB image.

    Args:
        cfg: LazyConfig with ``cfg.model`` (and ``cfg.train.device`` unless ``device`` is given).
        weights (str or None): checkpoint path; ``None`` uses ``cfg.train.init_checkpoint`` (may be empty:
            then the model keeps the weights it was built with, useful only for smoke tests).
        device (str or None): overrides ``cfg.train.device``.
        resize_to ((long, short) or None): test-time keep-ratio resize, the evaluation mapper's
            (:class:`mfuser.data.transforms.ResizeKeepRatio`), so the model sees the same pixels.

    Call: ``predictor(image)`` with ``image`` uint8 RGB ``(H, W, 3)`` -> ``{"sem_seg": Tensor[K, H, W]}``
    (class scores at the original size, on the CPU).
    """

    def __init__(self, cfg, *, weights: str | None = None, device: str | None = None,
                 resize_to: Sequence[int] | None = None):
        self.device = torch.device(device or cfg.train.get("device", "cpu"))
        self.model = instantiate(cfg.model).to(self.device).eval()
        weights = cfg.train.get("init_checkpoint", "") if weights is None else weights
        if weights:
            MFuserCheckpointer(self.model).load(weights)
        self.resize = ResizeKeepRatio(resize_to)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"expected an RGB image array (H, W, 3), got {getattr(image, 'shape', type(image))}")
        height, width = image.shape[:2]
        image = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        inputs = {"image": tensor.to(self.device), "height": height, "width": width}
        out = self.model([inputs])[0]
        return {"sem_seg": out["sem_seg"].float().cpu()}
