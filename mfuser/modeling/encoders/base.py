"""The block-wise interface of MFuser's frozen image encoders.

The fusion backbone interleaves two frozen ViTs with trainable MVFusers, so every encoder exposes its forward
pass in pieces instead of one ``forward``::

    tokens = enc.embed(images)                 # (B, P + h*w, C); images (B, 3, H, W) RGB in 0..255
    grid = enc.grid(images.shape[-2:])         # (h, w)
    for i in range(enc.num_blocks):
        tokens = enc.block(i, tokens, grid)    # (B, P + h*w, C)
    global_emb, dense_emb = enc.finish(tokens, grid, residual)   # VLMs only: (B, 1, D), (B, D, h, w)

``P = enc.num_prefix_tokens`` (class token(s)), ``C = enc.embed_dim``. Each encoder normalises its own input
(mean/std of its pretraining), adds position embeddings interpolated to the actual grid and keeps every parameter
frozen (``requires_grad=False``); trainable parts of MFuser live elsewhere.
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence, Tuple

import torch
import torch.nn.functional as F

# Per-stream normalisation constants (0..1 scale; multiplied by 255 in the encoders), from open_clip.
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD
from open_clip.constants import INCEPTION_MEAN as HALF  # SigLIP normalises with mean = std = 0.5
from open_clip.constants import OPENAI_DATASET_MEAN as OPENAI_CLIP_MEAN
from open_clip.constants import OPENAI_DATASET_STD as OPENAI_CLIP_STD
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch import nn

from .checkpoints import OfficialCheckpointLoader

__all__ = ["FrozenImageEncoder", "HALF", "IMAGENET_MEAN", "IMAGENET_STD", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD"]



def resize_kernel(kernel: torch.Tensor, size: Tuple[int, int], mode: str, method: str) -> torch.Tensor:
    """Resize a patch-embedding kernel (O, I, k, k) to ``size``.

    method ``"pi"``: timm's ``resample_patch_embed`` (FlexiViT pseudo-inverse resize built on ``mode``
    interpolation); it keeps the projection of a resized patch equal to the original one, so a constant image
    gives the same patch embedding before and after. ``"interpolate"``: plain ``F.interpolate`` of the kernel,
    what the published MFuser code does (it scales a constant-image response by ~(16/14)^2).
    """
    if tuple(kernel.shape[-2:]) == tuple(size):
        return kernel
    kernel = kernel.float()
    if method == "pi":
        return resample_patch_embed(kernel, list(size), interpolation=mode, antialias=False)
    if method == "interpolate":
        return F.interpolate(kernel, size=size, mode=mode, align_corners=False)
    raise ValueError(f"patch_resample must be 'pi' or 'interpolate', got {method!r}")


class FrozenImageEncoder(OfficialCheckpointLoader, nn.Module):
    """Common machinery of the frozen image encoders (subclasses build the timm / open_clip model).

    Subclasses set ``embed_dim``, ``num_blocks``, ``num_prefix_tokens``, ``patch_size``, ``built_grid`` (the
    position-embedding grid after loading), ``pos_interpolation`` and the normalisation constants, and implement
    ``embed``, ``block``, ``_official_keys`` and ``_convert``.
    """

    embed_dim: int
    num_blocks: int
    num_prefix_tokens: int
    patch_size: int
    built_grid: Tuple[int, int]
    pos_interpolation: str = "bicubic"
    model_name: str = "encoder"

    def _init_norm(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)

    # ----------------------------------------------------------------------------------------------- geometry
    def grid(self, image_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Token grid (h, w) = (H // patch, W // patch); a stride-``patch`` conv drops the remainder pixels."""
        H, W = int(image_hw[0]), int(image_hw[1])
        if H < self.patch_size or W < self.patch_size:
            raise ValueError(f"{self.model_name}: image size {(H, W)} is smaller than the patch size {self.patch_size}")
        return H // self.patch_size, W // self.patch_size

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in 0..255 -> normalised with this encoder's mean/std, in the model dtype."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.model_name}: images must be a (B, 3, H, W) RGB tensor in 0..255, got {shape}")
        if not images.is_floating_point():
            images = images.float()
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        return x.to(self.param_dtype)

    @property
    def param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @staticmethod
    def _timm_patchify(patch_embed: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """timm ``PatchEmbed`` conv + norm without its divisibility assert: (B, 3, H, W) -> (B, h*w, C), (h, w).

        The stride-``patch`` convolution drops the last ``H % patch`` rows / columns, as the published code does
        for 512 px crops with /14 patches (36 * 14 = 504).
        """
        x = patch_embed.proj(x)
        h, w = x.shape[-2:]
        return patch_embed.norm(x.flatten(2).transpose(1, 2)), (h, w)

    def _pos_for_grid(self, pos: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(1, P + gh*gw, C) position embedding at ``built_grid`` -> (1, P + h*w, C) for ``grid``."""
        if tuple(grid) == tuple(self.built_grid):
            return pos
        return resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(self.built_grid),
                                      num_prefix_tokens=self.num_prefix_tokens,
                                      interpolation=self.pos_interpolation, antialias=False)

    def _check_tokens(self, tokens: torch.Tensor, grid: Tuple[int, int]) -> None:
        n = self.num_prefix_tokens + grid[0] * grid[1]
        if tokens.dim() != 3 or tokens.shape[1] != n or tokens.shape[2] != self.embed_dim:
            raise ValueError(f"{self.model_name}: tokens must be (B, {n}, {self.embed_dim}) for grid {tuple(grid)}, "
                             f"got {tuple(tokens.shape)}")

    def _check_block(self, i: int) -> None:
        if not 0 <= i < self.num_blocks:
            raise IndexError(f"{self.model_name}: block index {i} out of range [0, {self.num_blocks})")

    def _align_residual(self, residual: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor | None:
        """Last ``tokens.shape[1]`` tokens of ``residual`` (drops DINOv2's CLS when the VLM has fewer prefixes)."""
        if residual is None:
            return None
        n = tokens.shape[1]
        if residual.dim() != 3 or residual.shape[0] != tokens.shape[0] or residual.shape[2] != tokens.shape[2] \
                or residual.shape[1] < n:
            raise ValueError(f"{self.model_name}: residual must be (B={tokens.shape[0]}, >= {n}, {tokens.shape[2]}), "
                             f"got {tuple(residual.shape)}")
        return residual[:, residual.shape[1] - n:]

    @staticmethod
    def _dense(x: torch.Tensor, num_prefix: int, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, P + h*w, D) -> (B, D, h, w) patch tokens."""
        B, _, D = x.shape
        return x[:, num_prefix:].transpose(1, 2).reshape(B, D, grid[0], grid[1])

    # ----------------------------------------------------------------------------------------------- loading
    def _official_keys(self) -> Tuple[Iterable[str], Iterable[str]]:
        """(keys this encoder loads, keys of the same file it deliberately skips), in the file's naming."""
        raise NotImplementedError

    def _convert(self, sd: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], list]:
        """File state dict (float32) -> (``self.model``'s state dict, adapted-key descriptions)."""
        raise NotImplementedError

    def _checkpoint_target(self) -> nn.Module:
        return self.model

    def _maybe_load(self, weights: str | None) -> None:
        if weights is not None:
            self.load_official(weights)
        self.freeze()
