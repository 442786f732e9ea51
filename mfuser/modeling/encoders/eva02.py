"""The EVA02-CLIP-L/14-336 family: image tower, text tower, the official file's key layout and conversion.

* :class:`EVA02VisionEncoder`: the image tower, on timm's ``Eva`` (SwiGLU, sub-LN, 2D RoPE), loading ``visual.*``
  of ``EVA02_CLIP_L_336_psz14_s6B.pt``;
* :class:`EVA02TextEncoder`: the text tower with learnable contexts (the CLIP tower with GELU), loading ``text.*``;
* :func:`eva02_layout`: the keys, shapes and dtypes of the official file.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Tuple

import torch
from timm.layers import apply_rot_embed_cat
from timm.models.eva import Eva, EvaAttention
from timm.models.eva import checkpoint_filter_fn as timm_eva_filter
from torch import nn

from mfuser.layers.attention import scaled_dot_product_attention

from .base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, FrozenImageEncoder, resize_kernel
from .checkpoints import split_keys, tensor_shape_str
from .clip import CLIPTextEncoder

__all__ = ["EVA02VisionEncoder", "EVA02TextEncoder", "eva02_layout"]


class _EvaAttention(EvaAttention):
    """timm's ``EvaAttention`` (same parameters and state-dict keys) whose unmasked, non-causal calls with separate
    q / k / v projections (``qkv_fused=False``, as built here) run the attention through
    :func:`mfuser.layers.attention.scaled_dot_product_attention`; other calls are timm's."""

    def forward(self, x, rope=None, attn_mask=None, is_causal=False):
        if attn_mask is not None or is_causal or self.q_proj is None:
            return super().forward(x, rope=rope, attn_mask=attn_mask, is_causal=is_causal)
        B, N, C = x.shape
        q, k, v = (proj(x).reshape(B, N, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:  # RoPE on the patch tokens, as timm
            npt, half = self.num_prefix_tokens, getattr(self, "rotate_half", False)
            q = torch.cat([q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=half)], dim=2).type_as(v)
            k = torch.cat([k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=half)], dim=2).type_as(v)
        out = scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        out = self.norm(out.transpose(1, 2).reshape(B, N, C))
        if getattr(self, "gate", None) is not None:
            out = out * self.gate(x).sigmoid()
        return self.proj_drop(self.proj(out))


class EVA02VisionEncoder(FrozenImageEncoder):
    """Frozen EVA02-CLIP image tower (defaults: ViT-L/14 on a 512 crop -> 36x36 grid, head 1024 -> 768).

    Args:
        embed_dim, depth, num_heads, mlp_ratio: tower size (EVA02-L: 1024, 24, 16, 4 * 2 / 3 SwiGLU).
        patch_size: 14 (native; the conv ignores the last 512 - 36 * 14 = 8 pixels as in the published code).
        img_size: the official 24x24 position embedding is interpolated (bicubic) to img_size // patch at load.
        output_dim: width of the head Linear (768).
        rope_ref_grid: grid the RoPE frequencies are defined on (EVA-CLIP's pt_seq_len 16); RoPE is computed for
            the actual token grid of every call, so any input size works (the published code asserts 512x512).
        weights: path of ``EVA02_CLIP_L_336_psz14_s6B.pt`` to load, or None.

    Tokens ``[CLS, patches...]``; input RGB 0..255, OpenAI-CLIP-normalised inside.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4 * 2 / 3,
        patch_size: int = 14,
        img_size: int = 512,
        output_dim: int = 768,
        rope_ref_grid: int = 16,
        drop_path_rate: float = 0.0,
        patch_resample: str = "pi",
        weights: str | None = None,
    ):
        super().__init__()
        self.model = Eva(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, qkv_fused=False, swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True,
            use_rot_pos_emb=True, ref_feat_shape=(rope_ref_grid, rope_ref_grid), num_classes=output_dim,
            global_pool="token", dynamic_img_size=True, drop_path_rate=drop_path_rate,
        )
        # timm builds EvaAttention itself: turn it into the subclass in place (same parameters, keys and RNG use)
        for blk in self.model.blocks:
            if type(blk.attn) is EvaAttention:
                blk.attn.__class__ = _EvaAttention
        self.embed_dim = embed_dim
        self.num_blocks = depth
        self.num_heads = num_heads
        self.num_prefix_tokens = 1
        self.patch_size = patch_size
        self.out_dim = output_dim
        self.mlp_hidden = int(embed_dim * mlp_ratio)
        self.built_grid = tuple(self.model.patch_embed.grid_size)
        self.pos_interpolation = "bicubic"
        self.patch_resample = patch_resample
        self.model_name = f"EVA02-CLIP image tower (dim {embed_dim}, depth {depth})"
        self._rope_cache: Dict[Tuple, torch.Tensor] = {}
        self._init_norm(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        self.load_report = None
        self._maybe_load(weights)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 -> (B, 1 + h*w, C): patch embedding, CLS, position embedding."""
        m = self.model
        x, (h, w) = self._timm_patchify(m.patch_embed, self.normalize(images))
        x = torch.cat([m.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self._pos_for_grid(m.pos_embed, (h, w))
        return m.norm_pre(m.pos_drop(x))

    def rope(self, grid: Tuple[int, int], device=None, dtype=None) -> torch.Tensor:
        """RoPE table for a token grid (cached per grid; frozen, not a parameter)."""
        key = (tuple(grid), device, dtype)
        if key not in self._rope_cache:
            emb = self.model.rope.get_embed(shape=list(grid))
            self._rope_cache[key] = emb.to(device=device, dtype=dtype) if device is not None else emb
        return self._rope_cache[key]

    def block(self, i: int, tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Run EVA block ``i`` (RoPE for ``grid``) on (B, 1 + h*w, C) tokens."""
        self._check_block(i)
        self._check_tokens(tokens, grid)
        return self.model.blocks[i](tokens, rope=self.rope(grid, tokens.device))

    def finish(self, tokens: torch.Tensor, grid: Tuple[int, int], residual: torch.Tensor | None = None):
        """final norm(tokens) [+ residual] -> head Linear on every token.

        Returns:
            global_emb (B, 1, out_dim) from the class token, dense_emb (B, out_dim, h, w) from the patches.
        """
        self._check_tokens(tokens, grid)
        res = self._align_residual(residual, tokens)
        x = self.model.norm(tokens)
        if res is not None:
            x = x + res
        x = self.model.head(self.model.fc_norm(x))
        return x[:, :1], self._dense(x, 1, grid)

    # --------------------------------------------------------------------------------------------- loading
    def _official_keys(self):
        lay = eva02_layout(embed_dim=self.out_dim, vision_width=self.embed_dim, vision_layers=self.num_blocks,
                           vision_heads=self.num_heads, vision_mlp_hidden=self.mlp_hidden)
        vis, other = split_keys(lay, ("visual.",))
        used = [k for k in vis if "rope.freqs_" not in k]
        rope = [k for k in vis if "rope.freqs_" in k]  # recomputed for the actual grid
        return used, rope + other

    def _convert(self, sd: Dict[str, torch.Tensor]):
        adapted = []
        k = "visual.patch_embed.proj.weight"
        sd = dict(sd)
        if k in sd:
            old = sd[k]
            sd[k] = resize_kernel(old, (self.patch_size, self.patch_size), "bicubic", self.patch_resample)
            if sd[k].shape != old.shape:
                adapted.append(f"{k}: {tensor_shape_str(old)} -> {tensor_shape_str(sd[k])} (kernel resize)")
        old_pos = sd.get("visual.pos_embed")
        # timm's converter: strips 'visual.', renames EVA-CLIP -> timm, resamples pos_embed (bicubic)
        out = timm_eva_filter(sd, self.model, interpolation="bicubic", antialias=False)
        if old_pos is not None and out["pos_embed"].shape != old_pos.shape:
            adapted.append(f"visual.pos_embed: {tensor_shape_str(old_pos)} -> {tensor_shape_str(out['pos_embed'])} "
                           "(bicubic)")
        return out, adapted


class EVA02TextEncoder(CLIPTextEncoder):
    """EVA02-CLIP-L text tower (width 768, 12 layers, 12 heads, GELU, causal mask, out 768), keys ``text.*``.

    Same arguments as :class:`CLIPTextEncoder`; defaults n_ctx 8 and name_length 5 (context length 13).
    """

    _family = "EVA02-CLIP"
    _prefix = "text."

    def __init__(self, *, width: int = 768, layers: int = 12, heads: int = 12, output_dim: int = 768,
                 vocab_size: int = 49408, n_ctx: int = 8, name_length: int = 5, tau: float = 0.07,
                 ctx_init_std: float = 1.0, weights: str | None = None):
        super().__init__(width=width, layers=layers, heads=heads, output_dim=output_dim, vocab_size=vocab_size,
                         n_ctx=n_ctx, name_length=name_length, tau=tau, ctx_init_std=ctx_init_std, weights=weights)

    @staticmethod
    def _act():
        return nn.GELU

    def _layout(self):
        t = self.tower
        return eva02_layout(text_width=t.width, text_layers=t.transformer.layers, vocab_size=t.vocab_size,
                            embed_dim=t.output_dim)

    def _official_keys(self):
        return split_keys(self._layout(), ("text.",))


# ---------------------------------------------------------------------------------------------------------------
# Official key layout: ordered {name: (shape, dtype)} exactly as in the key manifest (full-size defaults); the
# keyword arguments scale it down for tiny test files (same names, fewer blocks, smaller widths).
# ---------------------------------------------------------------------------------------------------------------
F16 = torch.float16


def eva02_layout(embed_dim: int = 768, vision_width: int = 1024, vision_layers: int = 24, vision_heads: int = 16,
                 vision_mlp_hidden: int = 2730, patch_size: int = 14, img_size: int = 336, context_length: int = 77,
                 vocab_size: int = 49408, text_width: int = 768, text_layers: int = 12):
    """``EVA02_CLIP_L_336_psz14_s6B.pt`` (EVA-CLIP ``CustomCLIP``): 712 keys at full size, all float16.

    Includes the 2 + 2 * depth RoPE table aliases ``*rope.freqs_{cos,sin}`` (grid^2, head_dim).
    """
    C, Hm, g, hd = vision_width, vision_mlp_hidden, img_size // patch_size, vision_width // vision_heads
    lay = OrderedDict()
    lay["logit_scale"] = ((), F16)
    lay["visual.cls_token"] = ((1, 1, C), F16)
    lay["visual.pos_embed"] = ((1, 1 + g * g, C), F16)
    lay["visual.patch_embed.proj.weight"] = ((C, 3, patch_size, patch_size), F16)
    lay["visual.patch_embed.proj.bias"] = ((C,), F16)
    lay["visual.rope.freqs_cos"] = ((g * g, hd), F16)
    lay["visual.rope.freqs_sin"] = ((g * g, hd), F16)
    for i in range(vision_layers):
        p = f"visual.blocks.{i}."
        for name, shape in (("norm1.weight", (C,)), ("norm1.bias", (C,)), ("attn.q_bias", (C,)),
                            ("attn.v_bias", (C,)), ("attn.q_proj.weight", (C, C)), ("attn.k_proj.weight", (C, C)),
                            ("attn.v_proj.weight", (C, C)), ("attn.inner_attn_ln.weight", (C,)),
                            ("attn.inner_attn_ln.bias", (C,)), ("attn.proj.weight", (C, C)), ("attn.proj.bias", (C,)),
                            ("attn.rope.freqs_cos", (g * g, hd)), ("attn.rope.freqs_sin", (g * g, hd)),
                            ("norm2.weight", (C,)), ("norm2.bias", (C,)), ("mlp.w1.weight", (Hm, C)),
                            ("mlp.w1.bias", (Hm,)), ("mlp.w2.weight", (Hm, C)), ("mlp.w2.bias", (Hm,)),
                            ("mlp.ffn_ln.weight", (Hm,)), ("mlp.ffn_ln.bias", (Hm,)), ("mlp.w3.weight", (C, Hm)),
                            ("mlp.w3.bias", (C,))):
            lay[p + name] = (shape, F16)
    lay["visual.norm.weight"] = ((C,), F16)
    lay["visual.norm.bias"] = ((C,), F16)
    lay["visual.head.weight"] = ((embed_dim, C), F16)
    lay["visual.head.bias"] = ((embed_dim,), F16)
    Wt = text_width
    lay["text.positional_embedding"] = ((context_length, Wt), F16)
    lay["text.text_projection"] = ((Wt, embed_dim), F16)
    lay["text.token_embedding.weight"] = ((vocab_size, Wt), F16)
    for i in range(text_layers):
        p = f"text.transformer.resblocks.{i}."
        for name, shape in (("ln_1.weight", (Wt,)), ("ln_1.bias", (Wt,)), ("attn.in_proj_weight", (3 * Wt, Wt)),
                            ("attn.in_proj_bias", (3 * Wt,)), ("attn.out_proj.weight", (Wt, Wt)),
                            ("attn.out_proj.bias", (Wt,)), ("ln_2.weight", (Wt,)), ("ln_2.bias", (Wt,)),
                            ("mlp.c_fc.weight", (4 * Wt, Wt)), ("mlp.c_fc.bias", (4 * Wt,)),
                            ("mlp.c_proj.weight", (Wt, 4 * Wt)), ("mlp.c_proj.bias", (Wt,))):
            lay[p + name] = (shape, F16)
    lay["text.ln_final.weight"] = ((Wt,), F16)
    lay["text.ln_final.bias"] = ((Wt,), F16)
    return lay
