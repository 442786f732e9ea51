"""SigLIP ViT-L/16-384 image tower, on timm's ``VisionTransformer`` (no class token, MAP head)."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from .base import HALF, FrozenImageEncoder, resize_kernel
from .checkpoints import siglip_layout, split_keys, tensor_shape_str

__all__ = ["SigLIPVisionEncoder", "hf_siglip_layer_map"]


def hf_siglip_layer_map(hf_prefix: str, out_prefix: str, sd: Dict[str, torch.Tensor], names: Dict[str, str],
                        qkv_name: Tuple[str, str]) -> Dict[str, torch.Tensor]:
    """Map one HF ``SiglipEncoderLayer`` (prefix ``hf_prefix``) onto timm / open_clip names.

    ``names`` renames the non-attention sub-modules; q/k/v projections are concatenated [q; k; v] into
    ``out_prefix + qkv_name[0]`` (weight) and ``qkv_name[1]`` (bias). Keys absent from ``sd`` are skipped.
    """
    out = {}
    for hf, ours in names.items():
        for leaf in ("weight", "bias"):
            if f"{hf_prefix}{hf}.{leaf}" in sd:
                out[f"{out_prefix}{ours}.{leaf}"] = sd[f"{hf_prefix}{hf}.{leaf}"]
    for leaf, target in zip(("weight", "bias"), qkv_name):
        parts = [sd.get(f"{hf_prefix}self_attn.{p}_proj.{leaf}") for p in "qkv"]
        if all(p is not None for p in parts):
            out[out_prefix + target] = torch.cat(parts, dim=0)
    return out


class SigLIPVisionEncoder(FrozenImageEncoder):
    """Frozen SigLIP image tower (defaults: ViT-L/16 on a 512 crop -> 32x32 grid, MAP head, out 1024).

    Args:
        embed_dim, depth, num_heads, mlp_ratio: tower size (SigLIP-L: 1024, 24, 16, 4).
        patch_size: 16 (native).
        img_size: the official 24x24 position embedding is interpolated (bilinear) to img_size // 16 at load.
        act_layer: "gelu_tanh" (the GELU of the released big_vision / HF weights; timm's own siglip config uses
            exact GELU, a small numerical difference).
        weights: path of ``siglip_vitl16_384.pth`` (HF ``SiglipModel`` names) to load, or None.

    No prefix tokens (``num_prefix_tokens = 0``); input RGB 0..255, normalised with mean = std = 0.5 inside.
    """

    pos_interpolation = "bilinear"

    def __init__(
        self,
        *,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        img_size: int = 512,
        act_layer: str = "gelu_tanh",
        drop_path_rate: float = 0.0,
        patch_resample: str = "pi",
        weights: str | None = None,
    ):
        super().__init__()
        self.model = VisionTransformer(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, class_token=False, global_pool="map", num_classes=0, dynamic_img_size=True,
            act_layer=act_layer, drop_path_rate=drop_path_rate,
        )
        self.embed_dim = embed_dim
        self.num_blocks = depth
        self.num_heads = num_heads
        self.num_prefix_tokens = 0
        self.patch_size = patch_size
        self.out_dim = embed_dim
        self.mlp_hidden = int(embed_dim * mlp_ratio)
        self.built_grid = tuple(self.model.patch_embed.grid_size)
        self.patch_resample = patch_resample
        self.model_name = f"SigLIP ViT image tower (dim {embed_dim}, depth {depth})"
        self._init_norm(HALF, HALF)
        self.load_report = None
        self._maybe_load(weights)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 -> (B, h*w, C): patch embedding + position embedding."""
        x, (h, w) = self._timm_patchify(self.model.patch_embed, self.normalize(images))
        return x + self._pos_for_grid(self.model.pos_embed, (h, w))

    def block(self, i: int, tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Run block ``i`` on (B, h*w, C) tokens."""
        self._check_block(i)
        self._check_tokens(tokens, grid)
        return self.model.blocks[i](tokens)

    def _map_attention(self, queries: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The MAP head's multi-head attention with its own q / kv / out projections, (B, Q, C) x (B, N, C)."""
        pool = self.model.attn_pool
        B, Q, C = queries.shape
        N = x.shape[1]
        nh, hd = pool.num_heads, C // pool.num_heads
        q = pool.q(queries).reshape(B, Q, nh, hd).transpose(1, 2)
        kv = pool.kv(x).reshape(B, N, 2, nh, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(pool.q_norm(q), pool.k_norm(kv[0]), kv[1])
        return pool.proj(out.transpose(1, 2).reshape(B, Q, C))

    def finish(self, tokens: torch.Tensor, grid: Tuple[int, int], residual: torch.Tensor | None = None):
        """post-LN(tokens) [+ residual] -> MAP head.

        global: probe-query attention pooling, then ``+ MLP(LN(.))`` -> (B, 1, C).
        dense: the same attention run as full self-attention over all tokens, then ``+ MLP(LN(.))`` -> (B, C, h, w).
        """
        self._check_tokens(tokens, grid)
        res = self._align_residual(residual, tokens)
        x = self.model.norm(tokens)
        if res is not None:
            x = x + res
        pool = self.model.attn_pool
        g = self._map_attention(pool.latent.expand(x.shape[0], -1, -1), x)
        g = g + pool.mlp(pool.norm(g))
        d = self._map_attention(x, x)
        d = d + pool.mlp(pool.norm(d))
        return g, self._dense(d, 0, grid)

    # --------------------------------------------------------------------------------------------- loading
    def _official_keys(self):
        lay = siglip_layout(vision_width=self.embed_dim, vision_layers=self.num_blocks, vision_mlp=self.mlp_hidden,
                            embed_dim=self.embed_dim)
        return split_keys(lay, ("vision_model.",))  # the text tower and logit_* are the text encoder's

    def _convert(self, sd: Dict[str, torch.Tensor]):
        P = "vision_model."
        out, adapted = {}, []
        k = P + "embeddings.patch_embedding.weight"
        if k in sd:
            v = sd[k]
            out["patch_embed.proj.weight"] = resize_kernel(v, (self.patch_size,) * 2, "bilinear", self.patch_resample)
            if out["patch_embed.proj.weight"].shape != v.shape:
                adapted.append(f"{k}: {tensor_shape_str(v)} -> {tensor_shape_str(out['patch_embed.proj.weight'])}")
        if P + "embeddings.patch_embedding.bias" in sd:
            out["patch_embed.proj.bias"] = sd[P + "embeddings.patch_embedding.bias"]
        k = P + "embeddings.position_embedding.weight"
        if k in sd:
            v = sd[k]
            g_old = int(round(v.shape[0] ** 0.5))
            if g_old * g_old != v.shape[0]:
                raise ValueError(f"{k}: {v.shape[0]} positions do not form a square grid")
            new = v.unsqueeze(0)
            if (g_old, g_old) != self.built_grid:
                new = resample_abs_pos_embed(new, new_size=list(self.built_grid), old_size=[g_old, g_old],
                                             num_prefix_tokens=0, interpolation="bilinear", antialias=False)
                adapted.append(f"{k}: {tensor_shape_str(v)} -> {tensor_shape_str(new[0])} (bilinear)")
            out["pos_embed"] = new
        for i in range(self.num_blocks):
            out.update(hf_siglip_layer_map(
                f"{P}encoder.layers.{i}.", f"blocks.{i}.", sd,
                {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj",
                 "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}, ("attn.qkv.weight", "attn.qkv.bias")))
        H = P + "head."
        ren = {P + "post_layernorm.weight": "norm.weight", P + "post_layernorm.bias": "norm.bias",
               H + "probe": "attn_pool.latent", H + "attention.out_proj.weight": "attn_pool.proj.weight",
               H + "attention.out_proj.bias": "attn_pool.proj.bias", H + "layernorm.weight": "attn_pool.norm.weight",
               H + "layernorm.bias": "attn_pool.norm.bias"}
        for a in ("fc1", "fc2"):
            for leaf in ("weight", "bias"):
                ren[f"{H}mlp.{a}.{leaf}"] = f"attn_pool.mlp.{a}.{leaf}"
        out.update({t: sd[s] for s, t in ren.items() if s in sd})
        C = self.embed_dim
        for leaf in ("weight", "bias"):  # MHA in_proj rows [q; k; v] -> timm's q and kv Linear layers
            s = f"{H}attention.in_proj_{leaf}"
            if s in sd:
                out[f"attn_pool.q.{leaf}"] = sd[s][:C]
                out[f"attn_pool.kv.{leaf}"] = sd[s][C:]
        return out, adapted
