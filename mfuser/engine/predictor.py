"""Single-image inference for LazyConfig models (used by ``tools/demo.py``).

Detectron2's ``DefaultPredictor`` reads a yacs config (``cfg.INPUT.*``, ``MODEL.DEVICE``); this is its
LazyConfig counterpart: ``instantiate(cfg.model)``, strict checkpoint load, the test-time resize of the
evaluation mapper, and a call with the original ``height`` / ``width`` so the model returns its
prediction at the original size (sliding-window inference, if any, is the model's job).
"""
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import instantiate

from .checkpoint import MFuserCheckpointer

__all__ = ["MFuserPredictor", "keep_ratio_fit"]


def keep_ratio_fit(height: int, width: int, scale: Sequence[int] | None) -> Tuple[int, int]:
    """Size ``(h, w)`` of an image rescaled, aspect kept, to fit ``scale = (long, short)`` edges.

    The mmseg ``Resize(img_scale=(2048, 1024), keep_ratio=True)`` rule: factor
    ``min(long / max(h, w), short / min(h, w))`` (it may up-scale). ``scale=None`` keeps the size.
    """
    if scale is None:
        return int(height), int(width)
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class MFuserPredictor:
    """Build a model from a LazyConfig, load weights, predict one RGB image.

    Args:
        cfg: LazyConfig with ``cfg.model`` (and ``cfg.train.device`` unless ``device`` is given).
        weights (str or None): checkpoint path; ``None`` uses ``cfg.train.init_checkpoint`` (may be empty:
            then the model keeps the weights it was built with, useful only for smoke tests).
        device (str or None): overrides ``cfg.train.device``.
        resize_to ((long, short) or None): test-time keep-ratio resize (``keep_ratio_fit``).

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
        self.resize_to = tuple(resize_to) if resize_to is not None else None

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"expected an RGB image array (H, W, 3), got {getattr(image, 'shape', type(image))}")
        height, width = image.shape[:2]
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        new_h, new_w = keep_ratio_fit(height, width, self.resize_to)
        if (new_h, new_w) != (height, width):
            tensor = F.interpolate(tensor[None].float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
            tensor = tensor[0].round().clamp(0, 255).to(torch.uint8)
        inputs = {"image": tensor.to(self.device), "height": height, "width": width}
        out = self.model([inputs])[0]
        return {"sem_seg": out["sem_seg"].float().cpu()}
