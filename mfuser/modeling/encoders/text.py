"""Frozen VLM text towers with learnable CoOp context vectors (docs/reference.md, "Text encoders and MTEnhancer").

Each class name is tokenised to a short sequence (start token, name pieces, end token, padding), ``n_ctx``
learnable context vectors are inserted right after the first token, the sequence runs through the frozen open_clip
text transformer, is pooled and projected into the image-text embedding space::

    enc = CLIPTextEncoder(weights="pretrained/ViT-L-14-336px.pt")
    text = enc(["road", "sidewalk", ...])          # (K, 768)
    scale, bias = enc.score_calibration()          # logits = scale * cos(image, text) (+ bias for SigLIP)

Class names always come from the caller (dataset metadata). Only ``contexts`` is trainable. In eval mode the
output is cached per vocabulary (and per context-vector version); ``train()`` clears the cache.

This module holds the logic the towers share (:class:`PromptTextEncoder`) and the BPE tokenisation of the CLIP
family; each tower lives with its family's image tower and key layout: ``CLIPTextEncoder`` in ``clip.py``,
``EVA02TextEncoder`` in ``eva02.py``, ``SigLIPTextEncoder`` and its SentencePiece tokenizer in ``siglip.py``.
"""
from __future__ import annotations

import functools
import logging
from typing import Dict, List, Sequence, Tuple

import torch
from open_clip.transformer import TextTransformer
from torch import nn

from .checkpoints import LoadReport, OfficialCheckpointLoader, tensor_shape_str

__all__ = ["PromptTextEncoder", "tokenize_bpe"]

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
        # the autocast state is part of the key: embeddings cached under bf16 autocast are bf16 and must not be
        # handed to a float32 forward (nor float32 ones stand in for what a bf16 run computes)
        kind = self.contexts.device.type
        amp = (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)) if kind in ("cpu", "cuda") else None
        key = (tuple(class_names), self.contexts._version, self.contexts.device, self.contexts.dtype, amp)
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


def tokenize_bpe(names: List[str], length: int, model_name: str) -> torch.Tensor:
    """(K,) names -> (K, length) int64 ids with open_clip's CLIP BPE (SOT, pieces, EOT, zero padding).

    Names longer than ``length - 2`` pieces are truncated (with a warning naming ``model_name``)."""
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
