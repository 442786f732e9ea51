"""DINOv2 ViT-L/14 (the vision foundation model stream), on timm's ``VisionTransformer``."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as timm_vit_filter

from mfuser.layers.attention import ViTAttention

from .base import IMAGENET_MEAN, IMAGENET_STD, FrozenImageEncoder, resize_kernel
from .checkpoints import tensor_shape_str

__all__ = ["DINOv2Encoder", "dinov2_layout"]


class DINOv2Encoder(FrozenImageEncoder):
    """Frozen DINOv2 ViT (defaults: ViT-L, patch 16 on a 512 crop -> 32x32 grid, as MFuser's /16 variants).

    Args:
        embed_dim, depth, num_heads, mlp_ratio: ViT size (ViT-L: 1024, 24, 16, 4).
        patch_size: 16 for the /16 VLMs (the official 14x14 kernel is resized at load), 14 for EVA02.
        img_size: crop the position embedding is interpolated to at load (512 -> 32x32 or 36x36 grid); other input
            sizes re-interpolate it at runtime.
        init_values: LayerScale init (overwritten by the checkpoint).
        drop_path_rate: stochastic depth; 0 keeps the frozen blocks deterministic.
        pos_interpolation: "bicubic" as DINOv2 / MFuser (37x37 -> grid at load, and at runtime).
        pos_resample: how the position embedding is fitted to the input grid at runtime (loading always resamples
            37x37 -> built grid by size). "dinov2" (default, DINOv2's own ``interpolate_pos_encoding`` that the
            published code runs): unchanged when the input has the built number of patches and a square image,
            else ``pos_interpolation`` of the square patch grid with ``scale_factor = ((h + 0.1) / n, (w + 0.1) / n)``
            (n = built grid side), in float32; PyTorch then samples at ``(i + 0.5) / scale - 0.5``, slightly off the
            size-based positions. "size": timm's ``resample_abs_pos_embed`` to the target size (samples at
            ``(i + 0.5) * n / h - 0.5``), geometrically exact. Both give the same result on the built grid.
        patch_resample: "pi" (timm's pseudo-inverse kernel resize with bicubic interpolation, default: it keeps a
            patch's embedding unchanged when the patch is resized with it) or "interpolate" (plain bicubic
            ``F.interpolate`` of the kernel, bit-for-bit what the published MFuser code does).
        weights: path of ``dinov2_vitl14_pretrain.pth`` to load, or None.

    Token layout: ``[CLS, patches...]`` (``num_prefix_tokens = 1``); input RGB 0..255, ImageNet-normalised inside.
    """

    model_name = "DINOv2 ViT"

    def __init__(
        self,
        *,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        img_size: int = 512,
        init_values: float = 1e-5,
        drop_path_rate: float = 0.0,
        pos_interpolation: str = "bicubic",
        patch_resample: str = "pi",
        pos_resample: str = "dinov2",
        weights: str | None = None,
    ):
        super().__init__()
        if pos_resample not in ("dinov2", "size"):
            raise ValueError(f"pos_resample must be 'dinov2' or 'size', got {pos_resample!r}")
        self.model = VisionTransformer(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, init_values=init_values, num_classes=0, global_pool="token", class_token=True,
            dynamic_img_size=True, drop_path_rate=drop_path_rate, qkv_bias=True,
            attn_layer=ViTAttention,  # timm's Attention, with the faster attention form (mfuser.layers.attention)
        )
        self.embed_dim = embed_dim
        self.num_blocks = depth
        self.num_prefix_tokens = 1
        self.patch_size = patch_size
        self.built_grid = tuple(self.model.patch_embed.grid_size)
        self.pos_interpolation = pos_interpolation
        self.patch_resample = patch_resample
        self.pos_resample = pos_resample
        if pos_resample == "dinov2" and self.built_grid[0] != self.built_grid[1]:
            raise ValueError(f"pos_resample='dinov2' needs a square position-embedding grid, got {self.built_grid}")
        self.mlp_ratio = mlp_ratio
        self.model_name = f"DINOv2 ViT (dim {embed_dim}, depth {depth})"
        self._init_norm(IMAGENET_MEAN, IMAGENET_STD)
        self.load_report = None
        self._maybe_load(weights)

    # --------------------------------------------------------------------------------------------- interface
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 -> (B, 1 + h*w, C): patch embedding, CLS, position embedding."""
        x, (h, w) = self._timm_patchify(self.model.patch_embed, self.normalize(images))
        B = x.shape[0]
        x = torch.cat([self.model.cls_token.expand(B, -1, -1), x], dim=1)
        return x + self.pos_for_input((h, w), tuple(images.shape[-2:])).to(x.dtype)

    def pos_for_input(self, grid: Tuple[int, int], image_hw: Tuple[int, int]) -> torch.Tensor:
        """(1, 1 + h*w, C) position embedding for an (H, W) = ``image_hw`` input with token grid ``grid`` = (h, w).

        ``pos_resample`` "size": resample to ``grid`` by size. "dinov2": DINOv2's runtime rule (see the class
        docstring). Its early exit compares the token count with the built one and the image *pixel* height with
        the width, as DINOv2 does: a non-square image with the built grid (e.g. 512x520 px, patch 16) is still
        resampled (by a scale factor 32.1 / 32).
        """
        pos = self.model.pos_embed
        if self.pos_resample == "size":
            return self._pos_for_grid(pos, grid)
        h, w = int(grid[0]), int(grid[1])
        n = self.built_grid[0]
        if h * w == n * n and int(image_hw[0]) == int(image_hw[1]):
            return pos
        P = self.num_prefix_tokens
        posf = pos.float()
        C = posf.shape[-1]
        patch = posf[:, P:].reshape(1, n, n, C).permute(0, 3, 1, 2)
        # DINOv2 offsets the target grid by 0.1 against floor rounding of the output size
        # (facebookresearch/dino issue #8); the scale factor (not the size) then also sets PyTorch's source
        # coordinates.
        scale = ((h + 0.1) / n, (w + 0.1) / n)
        patch = F.interpolate(patch, scale_factor=scale, mode=self.pos_interpolation)
        if tuple(patch.shape[-2:]) != (h, w):
            raise RuntimeError(f"{self.model_name}: position resample {n}x{n} -> {(h, w)} gave "
                               f"{tuple(patch.shape[-2:])}")
        patch = patch.permute(0, 2, 3, 1).reshape(1, h * w, C)
        return torch.cat([posf[:, :P], patch], dim=1).to(pos.dtype)

    def block(self, i: int, tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Run block ``i`` on (B, 1 + h*w, C) tokens."""
        self._check_block(i)
        self._check_tokens(tokens, grid)
        return self.model.blocks[i](tokens)

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """DINOv2's final LayerNorm, (B, N, C) -> (B, N, C)."""
        return self.model.norm(tokens)

    # --------------------------------------------------------------------------------------------- loading
    def _official_keys(self):
        lay = dinov2_layout(embed_dim=self.embed_dim, depth=self.num_blocks, mlp_ratio=self.mlp_ratio)
        used = [k for k in lay if k != "mask_token"]
        return used, ["mask_token"]  # mask_token: iBOT pretraining only

    def _convert(self, sd: Dict[str, torch.Tensor]):
        sd = dict(sd)
        adapted = []
        k = "patch_embed.proj.weight"
        if k in sd:
            old = sd[k]
            sd[k] = resize_kernel(old, (self.patch_size, self.patch_size), "bicubic", self.patch_resample)
            if sd[k].shape != old.shape:
                adapted.append(f"{k}: {tensor_shape_str(old)} -> {tensor_shape_str(sd[k])} "
                               f"(kernel resize, {self.patch_resample}, bicubic)")
        old_pos = sd.get("pos_embed")
        sd["mask_token"] = torch.zeros(1, self.embed_dim)  # makes timm's filter take its DINOv2 branch; dropped there
        # timm's own converter (DINOv2 naming -> timm) resamples pos_embed 37x37 -> built grid, bicubic, no antialias
        out = timm_vit_filter(sd, self.model, interpolation=self.pos_interpolation, antialias=False)
        if old_pos is not None and out["pos_embed"].shape != old_pos.shape:
            adapted.append(f"pos_embed: {tensor_shape_str(old_pos)} -> {tensor_shape_str(out['pos_embed'])} "
                           f"({self.pos_interpolation})")
        return out, adapted


# ---------------------------------------------------------------------------------------------------------------
# Official key layout: ordered {name: (shape, dtype)} exactly as in the key manifest (full-size defaults); the
# keyword arguments scale it down for tiny test files (same names, fewer blocks, smaller widths).
# ---------------------------------------------------------------------------------------------------------------
F32 = torch.float32


def dinov2_layout(embed_dim: int = 1024, depth: int = 24, patch_size: int = 14, img_size: int = 518,
                  mlp_ratio: float = 4.0) -> OrderedDict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """``dinov2_vitl14_pretrain.pth``: 343 keys at full size, all float32."""
    C, H, g = embed_dim, int(embed_dim * mlp_ratio), img_size // patch_size
    lay = OrderedDict()
    lay["cls_token"] = ((1, 1, C), F32)
    lay["pos_embed"] = ((1, 1 + g * g, C), F32)
    lay["mask_token"] = ((1, C), F32)
    lay["patch_embed.proj.weight"] = ((C, 3, patch_size, patch_size), F32)
    lay["patch_embed.proj.bias"] = ((C,), F32)
    for i in range(depth):
        p = f"blocks.{i}."
        for name, shape in (("norm1.weight", (C,)), ("norm1.bias", (C,)), ("attn.qkv.weight", (3 * C, C)),
                            ("attn.qkv.bias", (3 * C,)), ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
                            ("ls1.gamma", (C,)), ("norm2.weight", (C,)), ("norm2.bias", (C,)),
                            ("mlp.fc1.weight", (H, C)), ("mlp.fc1.bias", (H,)), ("mlp.fc2.weight", (C, H)),
                            ("mlp.fc2.bias", (C,)), ("ls2.gamma", (C,))):
            lay[p + name] = (shape, F32)
    lay["norm.weight"] = ((C,), F32)
    lay["norm.bias"] = ((C,), F32)
    return lay
