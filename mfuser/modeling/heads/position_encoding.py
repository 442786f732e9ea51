"""Sine position encoding (DETR / Mask2Former), for padding-free feature maps.

Why our own: detectron2 itself does not ship it (it lives in the Mask2Former project); the
formula is the standard one with mmdet's defaults (normalised, no 0.5 offset).
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of (y, x) positions, ``2 * num_pos_feats`` channels ([y-part | x-part]).

    Args:
        num_pos_feats: channels per axis (128 gives a 256-d encoding).
        temperature: frequency base.
        normalize: scale positions to (0, scale] over the map.
        scale: the normalisation range (2*pi by default).
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float | None = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale given but normalize=False")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) (only its shape, device and dtype are used) -> (B, 2*num_pos_feats, H, W)."""
        B, _, H, W = x.shape
        dtype = x.dtype if x.is_floating_point() else torch.float32
        y_embed = torch.arange(1, H + 1, device=x.device, dtype=torch.float32)[:, None].expand(H, W)
        x_embed = torch.arange(1, W + 1, device=x.device, dtype=torch.float32)[None, :].expand(H, W)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (H + eps) * self.scale
            x_embed = x_embed / (W + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, device=x.device, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, None] / dim_t
        pos_y = y_embed[:, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)  # (2F, H, W)
        return pos[None].expand(B, -1, -1, -1).to(dtype)
