"""The MFuser decode head: pixel decoder + text-query transformer decoder."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MFuserHead"]


class MFuserHead(nn.Module):
    """Runs ``pixel_decoder(features, text)`` then ``transformer_decoder(multi_scale, mask_features, text)``.

    Args:
        pixel_decoder: an :class:`MFuserPixelDecoder` (or anything with the same call contract).
        transformer_decoder: a :class:`TextQueryTransformerDecoder`.
    """

    def __init__(self, *, pixel_decoder: nn.Module, transformer_decoder: nn.Module):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder

    def forward(self, features: dict[str, torch.Tensor], text: torch.Tensor) -> dict:
        """
        Args:
            features: backbone features res2..res5 (B, C, H/s, W/s).
            text: (B, K, text_dim) enhanced class text embeddings.

        Returns:
            the transformer decoder's dict: "pred_logits" (B, K, K+1), "pred_masks" (B, K, H/4, W/4),
            "aux_outputs" (list of dicts with the same two keys).
        """
        mask_features, multi_scale_features = self.pixel_decoder(features, text)
        return self.transformer_decoder(multi_scale_features, mask_features, text)
