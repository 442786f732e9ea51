"""A tiny detectron2-style semantic-segmentation model and generated domains, standing in for MFuser in
tool tests. Same contract as the real model: ``list[dict]`` with ``"image"`` uint8 (3, H, W) (and
``"sem_seg"`` int64 (H, W) in training) -> loss dict in training, ``[{"sem_seg": Tensor[K, H, W]}]`` at the
input's ``height`` x ``width`` in eval."""
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

TOY_CLASSES = ["road", "car", "sky"]
TOY_COLORS = [(128, 64, 128), (0, 0, 142), (70, 130, 180)]
# domain name -> (number of images, (height, width))
TOY_DOMAINS = {"toy_source_train": (8, (24, 32)), "toy_target_a": (3, (24, 32)), "toy_target_b": (2, (30, 40))}


class ToySemSeg(nn.Module):
    """Frozen stem + trainable conv head.

    Args:
        num_classes: K.
        hidden: channels.
        nan_at_iter: return a NaN ``loss_ce`` from this training forward (0-based count) on; -1 never.
        optional_frozen: declare the frozen stem optional in checkpoints (``checkpoint_optional_prefixes``).
    """

    def __init__(self, *, num_classes: int = 3, hidden: int = 8, nan_at_iter: int = -1, optional_frozen: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(3, hidden, 3, padding=1)
        for p in self.stem.parameters():
            p.requires_grad_(False)
        self.level_embed = nn.Parameter(torch.zeros(hidden))
        self.body = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.norm = nn.GroupNorm(2, hidden)
        self.predictor = nn.Conv2d(hidden, num_classes, 1)
        self.nan_at_iter = nan_at_iter
        self._train_calls = 0
        if optional_frozen:
            self.checkpoint_optional_prefixes = ("stem.",)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) + self.level_embed[None, :, None, None]
        return self.predictor(F.relu(self.norm(self.body(x))))

    def forward(self, batched_inputs):
        device = self.level_embed.device
        if self.training:
            images = torch.stack([d["image"] for d in batched_inputs]).to(device).float() / 255.0
            target = torch.stack([d["sem_seg"] for d in batched_inputs]).to(device).long()
            logits = self._logits(images)
            loss = F.cross_entropy(logits, target, ignore_index=255)
            if 0 <= self.nan_at_iter <= self._train_calls:
                loss = loss * float("nan")
            self._train_calls += 1
            return {"loss_ce": loss, "loss_reg": 1e-3 * self.level_embed.pow(2).sum()}
        outputs = []
        for d in batched_inputs:
            x = d["image"].to(device).float()[None] / 255.0
            logits = self._logits(x)
            h, w = d.get("height", x.shape[-2]), d.get("width", x.shape[-1])
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            outputs.append({"sem_seg": logits[0].softmax(0)})
        return outputs


def make_toy_image(rng: np.random.Generator, hw) -> tuple:
    """An RGB image whose colour tells the class (with noise) and its trainId label (255 border)."""
    h, w = hw
    label = np.zeros((h, w), np.uint8)
    label[: h // 3] = 2
    x0 = int(rng.integers(0, w // 2))
    label[h // 2 :, x0 : x0 + w // 3] = 1
    image = np.asarray(TOY_COLORS, np.float32)[label] + rng.normal(0, 20, (h, w, 3))
    label[:, :1] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_toy_data(root: str, seed: int = 0) -> str:
    """Write ``<root>/<domain>/{images,labels}/*.png`` for every domain of :data:`TOY_DOMAINS`."""
    rng = np.random.default_rng(seed)
    for name, (n, hw) in TOY_DOMAINS.items():
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(root, name, sub), exist_ok=True)
        for i in range(n):
            image, label = make_toy_image(rng, hw)
            Image.fromarray(image).save(os.path.join(root, name, "images", f"{i:03d}.png"))
            Image.fromarray(label).save(os.path.join(root, name, "labels", f"{i:03d}_labelTrainIds.png"))
    return root


def register_toy_domains(root: str) -> list:
    """Register every toy domain under ``root`` with ``mfuser.data.register_target_domain``."""
    from mfuser.data.datasets.target_domain import register_target_domain

    return [
        register_target_domain(name, os.path.join(root, name, "images"), os.path.join(root, name, "labels"),
                               image_suffix=".png", label_suffix="_labelTrainIds.png", classes=TOY_CLASSES,
                               colors=TOY_COLORS, overwrite=True)
        for name in TOY_DOMAINS
    ]
