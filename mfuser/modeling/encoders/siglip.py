"""The SigLIP ViT-L/16-384 family: image tower, text tower, tokenizer, the official file's key layout and conversion.

* :class:`SigLIPVisionEncoder`: the image tower, on timm's ``VisionTransformer`` (no class token, MAP head),
  loading ``vision_model.*`` of ``siglip_vitl16_384.pth`` (HF ``SiglipModel`` names);
* :class:`SigLIPTextEncoder`: the text tower with learnable contexts, loading ``text_model.*`` and ``logit_*``;
* :class:`SigLIPTokenizer`: SigLIP's SentencePiece tokenisation from a local ``spiece.model``;
* :func:`siglip_layout`: the keys, shapes and dtypes of the official file.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import re
import string
from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
from open_clip.transformer import LayerNorm, TextTransformer
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from mfuser.layers.attention import ViTAttention, scaled_dot_product_attention

from .base import HALF, FrozenImageEncoder, resize_kernel
from .checkpoints import split_keys, tensor_shape_str
from .text import PromptTextEncoder

__all__ = ["SigLIPVisionEncoder", "SigLIPTextEncoder", "SigLIPTokenizer", "hf_siglip_layer_map", "siglip_layout"]

logger = logging.getLogger(__name__)


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
            attn_layer=ViTAttention,  # timm's Attention, with the faster attention form (mfuser.layers.attention)
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
        out = scaled_dot_product_attention(pool.q_norm(q), pool.k_norm(kv[0]), kv[1])
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


_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


class SigLIPTokenizer:
    """SentencePiece tokenizer for SigLIP from a local ``spiece.model`` file (no hub access).

    Text is canonicalised as SigLIP's processor does (lower-case, punctuation removed, whitespace collapsed), encoded,
    truncated to ``length - 1`` pieces, terminated with EOS and padded with EOS (SigLIP's pad token is ``</s>``).
    """

    def __init__(self, path: str, length: int = 5):
        path = os.fspath(path) if path is not None else None
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(
                f"SigLIP tokenizer model not found: {path!r} (tokenizer_path must be a local SentencePiece "
                "'spiece.model', e.g. the one of google/siglip-large-patch16-384)")
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=path)
        except Exception as e:
            raise ValueError(f"{path}: not a SentencePiece model ({type(e).__name__}: {e})") from None
        self.eos_id = self.sp.eos_id()
        if self.eos_id < 0:
            raise ValueError(f"{path}: SentencePiece model has no EOS piece; SigLIP needs one to terminate and pad")
        self.length = length
        self.path = path

    @staticmethod
    def canonicalize(text: str) -> str:
        return " ".join(_PUNCT.sub("", text.lower()).split())

    def __call__(self, names: Sequence[str]) -> torch.Tensor:
        out = torch.full((len(names), self.length), self.eos_id, dtype=torch.long)
        for i, name in enumerate(names):
            ids = self.sp.encode(self.canonicalize(name))
            if len(ids) > self.length - 1:
                logger.warning("SigLIP tokenizer: class name %r has %d pieces; truncated to %d", name, len(ids),
                               self.length - 1)
            ids = ids[: self.length - 1] + [self.eos_id]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class SigLIPTextEncoder(PromptTextEncoder):
    """SigLIP-L text tower (width 1024, 24 layers, 16 heads, no causal mask, last-token pooling, Linear head).

    Args:
        tokenizer_path: local SentencePiece model (``FileNotFoundError`` naming it when it does not exist; None
            only for weight checks: encoding names then raises).
        width, layers, heads, output_dim, vocab_size: tower size (1024, 24, 16, 1024, 32000).
        n_ctx: 5 context vectors inserted after the first token (SigLIP has no start token: after the first name
            piece, as the published code); name_length 5 -> context length 10 (position embedding 64 -> 10).
        act_layer: "gelu_tanh" as the released weights (HF ``gelu_pytorch_tanh``).
        weights: path of ``siglip_vitl16_384.pth`` (HF ``SiglipModel`` names), or None.

    ``score_calibration`` returns ``(exp(logit_scale), logit_bias)``: two scalar buffers set by ``load_official``
    from the pretrained file (defaults log 10 and -10 without it). They are non-persistent (not in ``state_dict``):
    the published MFuser keeps them as plain attributes read from the SigLIP file, so its checkpoints do not hold
    them, and they only calibrate the training-time score-map loss.
    """

    pool = "last"

    def __init__(self, *, tokenizer_path: str | None, width: int = 1024, layers: int = 24, heads: int = 16,
                 output_dim: int = 1024, vocab_size: int = 32000, n_ctx: int = 5, name_length: int = 5,
                 act_layer: str = "gelu_tanh", ctx_init_std: float = 1.0, weights: str | None = None):
        # A given path must exist (fails here, naming it); None builds the tower without a tokenizer (e.g. only to
        # check weights) and forward() then raises.
        tokenizer = SigLIPTokenizer(tokenizer_path, name_length) if tokenizer_path is not None else None
        act = functools.partial(nn.GELU, approximate="tanh") if act_layer == "gelu_tanh" else nn.GELU
        tower = TextTransformer(context_length=name_length + n_ctx, vocab_size=vocab_size, width=width, heads=heads,
                                layers=layers, output_dim=output_dim, no_causal_mask=True, pool_type="last",
                                proj_bias=True, act_layer=act,
                                norm_layer=functools.partial(LayerNorm, eps=1e-6))
        super().__init__(tower, n_ctx=n_ctx, name_length=name_length, ctx_init_std=ctx_init_std)
        self.tokenizer = tokenizer
        # Non-persistent: an official MFuser checkpoint has no such keys (they come from the pretrained file).
        self.register_buffer("logit_scale", torch.tensor(math.log(10.0)), persistent=False)
        self.register_buffer("logit_bias", torch.tensor(-10.0), persistent=False)
        self.model_name = f"SigLIP text tower (width {width}, layers {layers})"
        if weights is not None:
            self.load_official(weights)

    def tokenize(self, class_names: Sequence[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise RuntimeError(f"{self.model_name} was built with tokenizer_path=None; pass the local SentencePiece "
                               "model path (tokenizer_path) to encode class names")
        return self.tokenizer(list(class_names))

    def score_calibration(self):
        return self.logit_scale.exp(), self.logit_bias

    def _official_keys(self):
        t = self.tower
        lay = siglip_layout(text_width=t.width, text_layers=t.transformer.layers, vocab_size=t.vocab_size,
                            text_mlp=t.transformer.resblocks[0].mlp.c_fc.out_features, embed_dim=t.output_dim)
        used, other = split_keys(lay, ("text_model.", "logit_"))
        return used, other

    def _convert(self, sd):
        P = "text_model."
        out, adapted = {}, []
        if P + "embeddings.token_embedding.weight" in sd:
            out["token_embedding.weight"] = sd[P + "embeddings.token_embedding.weight"]
        k = P + "embeddings.position_embedding.weight"
        if k in sd:
            out["positional_embedding"] = self._truncate_pos(k, sd[k], adapted)
        for i in range(self.tower.transformer.layers):
            out.update(hf_siglip_layer_map(
                f"{P}encoder.layers.{i}.", f"transformer.resblocks.{i}.", sd,
                {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                 "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}, ("attn.in_proj_weight", "attn.in_proj_bias")))
        for s, t in ((P + "final_layer_norm", "ln_final"), (P + "head", "text_projection")):
            for leaf in ("weight", "bias"):
                if f"{s}.{leaf}" in sd:
                    out[f"{t}.{leaf}"] = sd[f"{s}.{leaf}"]
        for name in ("logit_scale", "logit_bias"):
            if name in sd:
                out["@" + name] = sd[name]
        return out, adapted


# ---------------------------------------------------------------------------------------------------------------
# Official key layout: ordered {name: (shape, dtype)} exactly as in the key manifest (full-size defaults); the
# keyword arguments scale it down for tiny test files (same names, fewer blocks, smaller widths).
# ---------------------------------------------------------------------------------------------------------------
F32 = torch.float32


def _hf_layers(prefix: str, width: int, mlp: int, layers: int):
    out = OrderedDict()
    W = width
    for i in range(layers):
        p = f"{prefix}encoder.layers.{i}."
        for name, shape in (("layer_norm1.weight", (W,)), ("layer_norm1.bias", (W,)),
                            ("self_attn.k_proj.weight", (W, W)), ("self_attn.k_proj.bias", (W,)),
                            ("self_attn.v_proj.weight", (W, W)), ("self_attn.v_proj.bias", (W,)),
                            ("self_attn.q_proj.weight", (W, W)), ("self_attn.q_proj.bias", (W,)),
                            ("self_attn.out_proj.weight", (W, W)), ("self_attn.out_proj.bias", (W,)),
                            ("layer_norm2.weight", (W,)), ("layer_norm2.bias", (W,)), ("mlp.fc1.weight", (mlp, W)),
                            ("mlp.fc1.bias", (mlp,)), ("mlp.fc2.weight", (W, mlp)), ("mlp.fc2.bias", (W,))):
            out[p + name] = (shape, F32)
    return out


def siglip_layout(vision_width: int = 1024, vision_layers: int = 24, vision_mlp: int = 4096, patch_size: int = 16,
                  img_size: int = 384, text_width: int = 1024, text_layers: int = 24, text_mlp: int = 4096,
                  vocab_size: int = 32000, max_positions: int = 64, embed_dim: int = 1024):
    """``siglip_vitl16_384.pth`` (HF ``SiglipModel`` names): 792 keys at full size, float32."""
    Wt, Wv, g = text_width, vision_width, img_size // patch_size
    lay = OrderedDict()
    lay["logit_scale"] = ((1,), F32)
    lay["logit_bias"] = ((1,), F32)
    lay["text_model.embeddings.token_embedding.weight"] = ((vocab_size, Wt), F32)
    lay["text_model.embeddings.position_embedding.weight"] = ((max_positions, Wt), F32)
    lay.update(_hf_layers("text_model.", Wt, text_mlp, text_layers))
    lay["text_model.final_layer_norm.weight"] = ((Wt,), F32)
    lay["text_model.final_layer_norm.bias"] = ((Wt,), F32)
    lay["text_model.head.weight"] = ((embed_dim, Wt), F32)
    lay["text_model.head.bias"] = ((embed_dim,), F32)
    lay["vision_model.embeddings.patch_embedding.weight"] = ((Wv, 3, patch_size, patch_size), F32)
    lay["vision_model.embeddings.patch_embedding.bias"] = ((Wv,), F32)
    lay["vision_model.embeddings.position_embedding.weight"] = ((g * g, Wv), F32)
    lay.update(_hf_layers("vision_model.", Wv, vision_mlp, vision_layers))
    lay["vision_model.post_layernorm.weight"] = ((Wv,), F32)
    lay["vision_model.post_layernorm.bias"] = ((Wv,), F32)
    lay["vision_model.head.probe"] = ((1, 1, Wv), F32)
    lay["vision_model.head.attention.in_proj_weight"] = ((3 * Wv, Wv), F32)
    lay["vision_model.head.attention.in_proj_bias"] = ((3 * Wv,), F32)
    lay["vision_model.head.attention.out_proj.weight"] = ((Wv, Wv), F32)
    lay["vision_model.head.attention.out_proj.bias"] = ((Wv,), F32)
    lay["vision_model.head.layernorm.weight"] = ((Wv,), F32)
    lay["vision_model.head.layernorm.bias"] = ((Wv,), F32)
    lay["vision_model.head.mlp.fc1.weight"] = ((vision_mlp, Wv), F32)
    lay["vision_model.head.mlp.fc1.bias"] = ((vision_mlp,), F32)
    lay["vision_model.head.mlp.fc2.weight"] = ((Wv, vision_mlp), F32)
    lay["vision_model.head.mlp.fc2.bias"] = ((Wv,), F32)
    return lay
