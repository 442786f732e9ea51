"""The OpenAI CLIP ViT-L/14-336 family: image tower, text tower, the official file's key layout and conversion.

* :class:`CLIPVisionEncoder`: the image tower, on open_clip's ``VisionTransformer`` (QuickGELU, as OpenAI's
  weights), loading ``visual.*`` of ``ViT-L-14-336px.pt``;
* :class:`CLIPTextEncoder`: the text tower with learnable contexts, loading the archive's top-level text keys;
* :func:`clip_layout`: the keys, shapes and dtypes of the official TorchScript archive.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
from open_clip.transformer import QuickGELU, TextTransformer, VisionTransformer
from timm.layers import drop_path, resample_abs_pos_embed

from mfuser.layers.attention import MultiheadAttention

from .base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, FrozenImageEncoder, resize_kernel
from .checkpoints import split_keys, tensor_shape_str
from .text import PromptTextEncoder, tokenize_bpe

__all__ = ["CLIPVisionEncoder", "CLIPTextEncoder", "clip_layout", "CLIP_EXTRA_KEYS"]


class CLIPVisionEncoder(FrozenImageEncoder):
    """Frozen CLIP image tower (defaults: ViT-L built with patch 16 on a 512 crop -> 32x32 grid, out 768).

    Args:
        width, layers, heads, mlp_ratio: tower size (ViT-L: 1024, 24, 16, 4).
        patch_size: 16 as MFuser (the official 14x14 kernel is resized at load, bilinear).
        img_size: the official 24x24 position embedding is interpolated (bilinear) to img_size // patch_size at
            load, and again at runtime for other input sizes.
        output_dim: text-space width of ``visual.proj`` (768).
        patch_resample: "pi" (timm pseudo-inverse resize on bilinear interpolation, default; keeps a resized patch's
            embedding) or "interpolate" (plain bilinear ``F.interpolate``, exactly the published code).
        double_class_embedding: True (default, the published code): the class token is ``class_embedding`` and
            the class position ``positional_embedding[0] + class_embedding``, so the CLS token before ``ln_pre`` is
            ``pos[0] + 2 * class_embedding``; a published MFuser-CLIP checkpoint was trained with it. False: the
            CLIP formulation ``pos[0] + class_embedding`` (as OpenAI / open_clip), for models trained that way.
        drop_path_rate: stochastic depth of the frozen blocks (published config: 0.1; default 0 = deterministic).
            Block ``i`` drops its two residual branches with rate ``linspace(0, drop_path_rate, layers)[i]``, only
            while this module is in training mode (see ``block``).
        weights: path of ``ViT-L-14-336px.pt`` (the OpenAI TorchScript archive) to load, or None.

    Tokens ``[CLS, patches...]`` after ``ln_pre``; input RGB 0..255, OpenAI-CLIP-normalised inside.
    """

    pos_interpolation = "bilinear"

    def __init__(
        self,
        *,
        width: int = 1024,
        layers: int = 24,
        heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        img_size: int = 512,
        output_dim: int = 768,
        patch_resample: str = "pi",
        double_class_embedding: bool = True,
        drop_path_rate: float = 0.0,
        weights: str | None = None,
    ):
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.model = VisionTransformer(
            image_size=img_size, patch_size=patch_size, width=width, layers=layers, heads=heads,
            mlp_ratio=mlp_ratio, output_dim=output_dim, act_layer=QuickGELU,
        )
        # the blocks' nn.MultiheadAttention as mfuser's subclass (same parameters and keys): batch-first
        # projections and the faster attention form for the size and dtype (mfuser.layers.attention)
        for blk in self.model.transformer.resblocks:
            MultiheadAttention.convert(blk.attn)
        self.embed_dim = width
        self.num_blocks = layers
        self.num_prefix_tokens = 1
        self.patch_size = patch_size
        self.out_dim = output_dim
        self.built_grid = tuple(self.model.grid_size)
        self.patch_resample = patch_resample
        self.double_class_embedding = bool(double_class_embedding)
        self.drop_path_rate = float(drop_path_rate)
        # the published code's stochastic-depth decay rule: rate i of linspace(0, drop_path_rate, layers); on the
        # CPU so that a build under a meta-device context still gets numbers
        self.drop_path_rates = torch.linspace(0, drop_path_rate, layers, device="cpu").tolist()
        self.model_name = f"CLIP ViT image tower (width {width}, layers {layers})"
        self._init_norm(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        self.load_report = None
        self._maybe_load(weights)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 -> (B, 1 + h*w, C): conv1, class token, position embedding, ln_pre.

        CLS before ``ln_pre``: ``class_embedding + (pos[0] + class_embedding)`` with ``double_class_embedding``
        (the published code's order of additions), else ``class_embedding + pos[0]``.
        """
        m = self.model
        x = m.conv1(self.normalize(images))  # (B, C, h, w)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([m.class_embedding.view(1, 1, C).expand(B, -1, -1).to(x.dtype), x], dim=1)
        pos = self._pos_for_grid(m.positional_embedding.unsqueeze(0), (h, w)).to(x.dtype)  # (1, 1 + h*w, C)
        if self.double_class_embedding:
            # The published CLIP tower adds class_embedding to the class position as well as using it as the class
            # token, so the CLS token carries it twice.
            cls_pos = pos[:, :1] + m.class_embedding.view(1, 1, C).to(x.dtype)
            pos = torch.cat([cls_pos, pos[:, 1:]], dim=1)
        x = x + pos
        return m.ln_pre(x)

    def block(self, i: int, tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Run residual attention block ``i`` on (B, 1 + h*w, C) tokens.

        open_clip's ``ResidualAttentionBlock.forward`` (``ls_1`` / ``ls_2`` are identities for CLIP), with stochastic
        depth on both residual branches at rate ``drop_path_rates[i]`` while ``self.training``. The published code
        runs its blocks on sequence-first (L, B, C) tokens and timm's ``drop_path`` draws one keep/drop per entry of
        the first axis, so a branch is dropped per token position, with the same draw for every image of the batch;
        the draw here is made on the same (L, B, C) view. At rate 0 or in eval mode the result equals
        ``resblocks[i](tokens)`` up to float rounding.
        """
        self._check_block(i)
        self._check_tokens(tokens, grid)
        blk = self.model.transformer.resblocks[i]
        rate = self.drop_path_rates[i]
        x = tokens + self._drop_path(blk.ls_1(blk.attention(q_x=blk.ln_1(tokens))), rate)
        return x + self._drop_path(blk.ls_2(blk.mlp(blk.ln_2(x))), rate)

    def _drop_path(self, branch: torch.Tensor, rate: float) -> torch.Tensor:
        """(B, L, C) residual branch -> timm ``drop_path`` applied to its (L, B, C) view (one draw per token)."""
        if rate == 0.0 or not self.training:
            return branch
        return drop_path(branch.transpose(0, 1), rate, True).transpose(0, 1)

    def finish(self, tokens: torch.Tensor, grid: Tuple[int, int], residual: torch.Tensor | None = None):
        """(tokens [+ residual]) -> ln_post -> proj on every token.

        Returns:
            global_emb (B, 1, out_dim) from the class token, dense_emb (B, out_dim, h, w) from the patches.
        """
        self._check_tokens(tokens, grid)
        res = self._align_residual(residual, tokens)
        x = tokens if res is None else tokens + res
        x = self.model.ln_post(x) @ self.model.proj
        return x[:, :1], self._dense(x, 1, grid)

    # --------------------------------------------------------------------------------------------- loading
    def _layout(self):
        return clip_layout(vision_layers=self.num_blocks, vision_width=self.embed_dim, embed_dim=self.out_dim)

    def _official_keys(self):
        used, other = split_keys(self._layout(), ("visual.",))
        return used, other  # other: the text tower, logit_scale and the 3 archive extras

    def _convert(self, sd: Dict[str, torch.Tensor]):
        out, adapted = {}, []
        for k, v in sd.items():
            name = k[len("visual."):]
            if name == "conv1.weight":
                new = resize_kernel(v, (self.patch_size, self.patch_size), "bilinear", self.patch_resample)
                if new.shape != v.shape:
                    adapted.append(f"{k}: {tensor_shape_str(v)} -> {tensor_shape_str(new)} "
                                   f"(kernel resize, {self.patch_resample}, bilinear)")
                v = new
            elif name == "positional_embedding":
                n_old = v.shape[0] - 1
                g_old = int(round(n_old ** 0.5))
                if g_old * g_old != n_old:
                    raise ValueError(f"{k}: {n_old} patch positions do not form a square grid")
                new = v.unsqueeze(0)
                if (g_old, g_old) != self.built_grid:
                    new = resample_abs_pos_embed(new, new_size=list(self.built_grid), old_size=[g_old, g_old],
                                                 num_prefix_tokens=1, interpolation="bilinear", antialias=False)
                    adapted.append(f"{k}: {tensor_shape_str(v)} -> {tensor_shape_str(new[0])} (bilinear)")
                v = new[0]
            out[name] = v
        return out, adapted


class CLIPTextEncoder(PromptTextEncoder):
    """OpenAI CLIP text tower (ViT-L/14-336: width 768, 12 layers, 12 heads, QuickGELU, causal mask, out 768).

    Args:
        width, layers, heads, output_dim, vocab_size: tower size.
        n_ctx: learnable context vectors after the start token (5).
        name_length: BPE length of a name: SOT + name + EOT + padding (5); the position embedding is truncated
            77 -> name_length + n_ctx (10).
        tau: temperature; ``score_calibration`` returns (1 / tau, None).
        ctx_init_std: std of the truncated-normal context init (reference: 1.0).
        weights: path of ``ViT-L-14-336px.pt`` (text keys are read from the same archive), or None.
    """

    pool = "argmax"

    def __init__(self, *, width: int = 768, layers: int = 12, heads: int = 12, output_dim: int = 768,
                 vocab_size: int = 49408, n_ctx: int = 5, name_length: int = 5, tau: float = 0.07,
                 ctx_init_std: float = 1.0, weights: str | None = None):
        tower = TextTransformer(context_length=name_length + n_ctx, vocab_size=vocab_size, width=width, heads=heads,
                                layers=layers, output_dim=output_dim, act_layer=self._act(), pool_type="argmax")
        super().__init__(tower, n_ctx=n_ctx, name_length=name_length, ctx_init_std=ctx_init_std)
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = tau
        self.model_name = f"{self._family} text tower (width {width}, layers {layers})"
        if weights is not None:
            self.load_official(weights)

    _family = "CLIP"
    _prefix = ""

    @staticmethod
    def _act():
        return QuickGELU

    def tokenize(self, class_names: Sequence[str]) -> torch.Tensor:
        return tokenize_bpe(list(class_names), self.name_length, self.model_name)

    def score_calibration(self):
        return torch.tensor(1.0 / self.tau, device=self.contexts.device), None

    def _layout(self):
        t = self.tower
        return clip_layout(transformer_width=t.width, transformer_layers=t.transformer.layers,
                           vocab_size=t.vocab_size, embed_dim=t.output_dim)

    def _official_keys(self):
        other, used = split_keys(self._layout(), ("visual.", "logit_scale", *CLIP_EXTRA_KEYS))
        return used, other

    def _convert(self, sd):
        out, adapted = {}, []
        for k, v in sd.items():
            name = k[len(self._prefix):]
            if name == "positional_embedding":
                v = self._truncate_pos(k, v, adapted)
            out[name] = v
        return out, adapted


# ---------------------------------------------------------------------------------------------------------------
# Official key layout: ordered {name: (shape, dtype)} exactly as in the key manifest (full-size defaults); the
# keyword arguments scale it down for tiny test files (same names, fewer blocks, smaller widths).
# ---------------------------------------------------------------------------------------------------------------
F32, F16, I64 = torch.float32, torch.float16, torch.int64


def _openai_resblocks(prefix: str, width: int, layers: int, fp16: Sequence[str], dtype_all=None):
    out = OrderedDict()
    W = width
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        for name, shape in (("attn.in_proj_weight", (3 * W, W)), ("attn.in_proj_bias", (3 * W,)),
                            ("attn.out_proj.weight", (W, W)), ("attn.out_proj.bias", (W,)),
                            ("ln_1.weight", (W,)), ("ln_1.bias", (W,)), ("mlp.c_fc.weight", (4 * W, W)),
                            ("mlp.c_fc.bias", (4 * W,)), ("mlp.c_proj.weight", (W, 4 * W)), ("mlp.c_proj.bias", (W,)),
                            ("ln_2.weight", (W,)), ("ln_2.bias", (W,))):
            dt = dtype_all or (F16 if any(name.startswith(f) for f in fp16) else F32)
            out[p + name] = (shape, dt)
    return out


def clip_layout(embed_dim: int = 768, image_resolution: int = 336, vision_layers: int = 24, vision_width: int = 1024,
                vision_patch_size: int = 14, context_length: int = 77, vocab_size: int = 49408,
                transformer_width: int = 768, transformer_layers: int = 12):
    """``ViT-L-14-336px.pt`` (OpenAI TorchScript): 449 entries at full size, mixed fp16/fp32 as convert_weights().

    The text tower sits at top level; the vision tower under ``visual.``; plus 0-dim int64 extras
    ``input_resolution``, ``context_length``, ``vocab_size`` and the fp32 ``logit_scale``.
    """
    fp16 = ("attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj")
    g = image_resolution // vision_patch_size
    Wv, Wt = vision_width, transformer_width
    lay = OrderedDict()
    lay["positional_embedding"] = ((context_length, Wt), F32)
    lay["text_projection"] = ((Wt, embed_dim), F16)
    lay["logit_scale"] = ((), F32)
    lay["input_resolution"] = ((), I64)
    lay["context_length"] = ((), I64)
    lay["vocab_size"] = ((), I64)
    lay["visual.class_embedding"] = ((Wv,), F32)
    lay["visual.positional_embedding"] = ((g * g + 1, Wv), F32)
    lay["visual.proj"] = ((Wv, embed_dim), F16)
    lay["visual.conv1.weight"] = ((Wv, 3, vision_patch_size, vision_patch_size), F16)
    lay["visual.ln_pre.weight"] = ((Wv,), F32)
    lay["visual.ln_pre.bias"] = ((Wv,), F32)
    lay.update(_openai_resblocks("visual.", Wv, vision_layers, fp16))
    lay["visual.ln_post.weight"] = ((Wv,), F32)
    lay["visual.ln_post.bias"] = ((Wv,), F32)
    lay.update(_openai_resblocks("", Wt, transformer_layers, fp16))
    lay["token_embedding.weight"] = ((vocab_size, Wt), F32)
    lay["ln_final.weight"] = ((Wt,), F32)
    lay["ln_final.bias"] = ((Wt,), F32)
    return lay


CLIP_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
