"""Frozen VLM text towers with learnable CoOp context vectors (MFuser reference §3.1).

Each class name is tokenised to a short sequence (start token, name pieces, end token, padding), ``n_ctx``
learnable context vectors are inserted right after the first token, the sequence runs through the frozen open_clip
text transformer, is pooled and projected into the image-text embedding space::

    enc = CLIPTextEncoder(weights="pretrained/ViT-L-14-336px.pt")
    text = enc(["road", "sidewalk", ...])          # (K, 768)
    scale, bias = enc.score_calibration()          # logits = scale * cos(image, text) (+ bias for SigLIP)

Class names always come from the caller (dataset metadata). Only ``contexts`` is trainable. In eval mode the
output is cached per vocabulary (and per context-vector version); ``train()`` clears the cache.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import re
import string
from typing import Dict, List, Sequence, Tuple

import torch
from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer
from torch import nn

from .checkpoints import (
    LoadReport,
    OfficialCheckpointLoader,
    clip_layout,
    eva02_layout,
    siglip_layout,
    split_keys,
    tensor_shape_str,
)
from .siglip import hf_siglip_layer_map

__all__ = ["PromptTextEncoder", "CLIPTextEncoder", "EVA02TextEncoder", "SigLIPTextEncoder", "SigLIPTokenizer"]

logger = logging.getLogger(__name__)


class PromptTextEncoder(OfficialCheckpointLoader, nn.Module):
    """Shared logic: context insertion, pooling, projection, caching, loading. See module docstring."""

    model_name = "text tower"
    pool = "argmax"  # "argmax" (EOT position, CLIP-style) or "last"

    def __init__(self, tower: TextTransformer, *, n_ctx: int, name_length: int, ctx_init_std: float):
        super().__init__()
        if n_ctx < 1 or name_length < 2:
            raise ValueError(f"n_ctx must be >= 1 and name_length >= 2, got n_ctx={n_ctx}, name_length={name_length}")
        self.tower = tower
        for p in self.tower.parameters():
            p.requires_grad_(False)
        self.n_ctx = n_ctx
        self.name_length = name_length
        self.width = tower.width
        self.out_dim = tower.output_dim
        # Reference: trunc_normal_(std=1) (truncated at +-2). Kept as the default so published training reproduces.
        self.contexts = nn.Parameter(torch.empty(1, n_ctx, tower.width))
        nn.init.trunc_normal_(self.contexts, std=ctx_init_std)
        self._token_cache: Dict[Tuple[str, ...], torch.Tensor] = {}
        self._out_cache: Tuple[tuple, torch.Tensor] | None = None
        self.load_report: LoadReport | None = None

    # --------------------------------------------------------------------------------------------- tokens
    def tokenize(self, class_names: Sequence[str]) -> torch.Tensor:
        """(K,) names -> (K, name_length) int64 token ids."""
        raise NotImplementedError

    def _tokens(self, class_names: Sequence[str]) -> torch.Tensor:
        if isinstance(class_names, str) or not all(isinstance(n, str) and n.strip() for n in class_names) \
                or len(class_names) == 0:
            raise ValueError(f"{self.model_name}: class_names must be a non-empty sequence of non-empty strings, "
                             f"got {class_names!r}")
        key = tuple(class_names)
        if key not in self._token_cache:
            tokens = self.tokenize(list(class_names))
            if int(tokens.max()) >= self.tower.vocab_size:
                raise ValueError(f"{self.model_name}: tokenizer produced id {int(tokens.max())} >= vocab size "
                                 f"{self.tower.vocab_size}; tokenizer and text tower do not match")
            self._token_cache[key] = tokens
        return self._token_cache[key]

    # --------------------------------------------------------------------------------------------- forward
    def train(self, mode: bool = True):
        self._out_cache = None
        return super().train(mode)

    def _pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool == "last":
            return x[:, -1]
        eot = tokens.argmax(dim=-1) + self.n_ctx  # EOT has the largest id in the CLIP BPE vocabulary
        return x[torch.arange(x.shape[0], device=x.device), eot]

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(K, name_length) ids -> (K, out_dim) embeddings with the context vectors inserted after token 0."""
        t = self.tower
        tokens = tokens.to(t.token_embedding.weight.device)
        x = t.token_embedding(tokens)
        ctx = self.contexts.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], ctx, x[:, 1:]], dim=1)  # (K, name_length + n_ctx, W)
        x = x + t.positional_embedding[: x.shape[1]].to(x.dtype)
        x = t.transformer(x, attn_mask=t.attn_mask)
        x = self._pool(t.ln_final(x), tokens)
        proj = t.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def forward(self, class_names: Sequence[str]) -> torch.Tensor:
        """(K,) class names -> (K, out_dim) text embeddings (not normalised)."""
        tokens = self._tokens(class_names)
        if self.training:
            return self.encode_tokens(tokens)
        key = (tuple(class_names), self.contexts._version, self.contexts.device, self.contexts.dtype)
        if self._out_cache is None or self._out_cache[0] != key:
            with torch.no_grad():
                self._out_cache = (key, self.encode_tokens(tokens))
        return self._out_cache[1]

    def score_calibration(self) -> Tuple[torch.Tensor, torch.Tensor | None]:
        """(scale, bias) turning cosine similarities into logits: ``scale * cos + bias`` (bias None: no bias)."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------- loading
    def _official_keys(self) -> Tuple[List[str], List[str]]:
        raise NotImplementedError

    def _convert(self, sd: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        raise NotImplementedError

    def _truncate_pos(self, key: str, v: torch.Tensor, adapted: List[str]) -> torch.Tensor:
        L = self.tower.positional_embedding.shape[0]
        if v.shape[0] < L:
            raise ValueError(f"{key}: file has {v.shape[0]} positions, the prompt needs {L}")
        if v.shape[0] != L:
            adapted.append(f"{key}: {tensor_shape_str(v)} -> {tensor_shape_str(v[:L])} (truncated)")
        return v[:L]

    def _checkpoint_target(self) -> nn.Module:
        return self.tower

    def load_official_state_dict(self, sd: Dict[str, torch.Tensor], source: str = "<state dict>",
                                 strict: bool = True) -> LoadReport:
        """Load this text tower from an official file's state dict (the same file as the image tower for CLIP /
        EVA / SigLIP). The context vectors are not in the file and keep their values."""
        report = super().load_official_state_dict(sd, source=source, strict=strict)
        self._out_cache = None
        return report

    def _load_extra(self, extra: Dict[str, torch.Tensor]) -> None:
        """Encoder-level buffers from the file (SigLIP's logit scale and bias)."""
        with torch.no_grad():
            for name, v in extra.items():
                getattr(self, name).copy_(v.reshape(()).to(getattr(self, name).dtype))


def _tokenize_bpe(names: List[str], length: int, model_name: str) -> torch.Tensor:
    tok = _bpe_tokenizer(length)
    for name in names:
        if len(tok.encode(name)) > length - 2:
            logger.warning("%s: class name %r has more than %d BPE tokens and is truncated", model_name, name,
                           length - 2)
    return tok(names).long()


@functools.lru_cache(maxsize=4)
def _bpe_tokenizer(length: int):
    from open_clip.tokenizer import SimpleTokenizer  # BPE vocabulary ships inside the open_clip package

    return SimpleTokenizer(context_length=length)


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
        return _tokenize_bpe(list(class_names), self.name_length, self.model_name)

    def score_calibration(self):
        return torch.tensor(1.0 / self.tau, device=self.contexts.device), None

    def _layout(self):
        t = self.tower
        return clip_layout(transformer_width=t.width, transformer_layers=t.transformer.layers,
                           vocab_size=t.vocab_size, embed_dim=t.output_dim)

    def _official_keys(self):
        other, used = split_keys(self._layout(), ("visual.", "logit_scale", "input_resolution", "context_length",
                                                  "vocab_size"))
        return used, other

    def _convert(self, sd):
        out, adapted = {}, []
        for k, v in sd.items():
            name = k[len(self._prefix):]
            if name == "positional_embedding":
                v = self._truncate_pos(k, v, adapted)
            out[name] = v
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
