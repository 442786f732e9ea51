"""Text-query masked-attention transformer decoder (tqdm / MFuser, docs/reference.md, "Transformer decoder").

Mask2Former's decoder with one query per class whose content is initialised from the class text
embedding; the classifier is a plain Linear to K + 1 (not text similarity).
"""
from __future__ import annotations

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import nn

from mfuser.layers.attention import MultiheadAttention

from .position_encoding import PositionEmbeddingSine

__all__ = ["TextQueryTransformerDecoder", "MaskedAttentionDecoderLayer"]


class MaskedAttentionDecoderLayer(nn.Module):
    """masked cross-attn -> LN -> self-attn -> LN -> FFN -> LN (post-norm; pre_norm=True puts each LN before
    its sub-layer instead).

    Both attentions are :class:`mfuser.layers.attention.MultiheadAttention` (``nn.MultiheadAttention``'s
    parameters and state-dict keys; the same function, faster on a CPU at small sizes).
    """

    def __init__(self, *, d_model: int = 256, num_heads: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.0, pre_norm: bool = False):
        super().__init__()
        self.cross_attn = MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, query, query_pos, memory, memory_pos, attn_mask):
        """
        Args:
            query, query_pos: (B, Q, C). memory, memory_pos: (B, S, C).
            attn_mask: (B * num_heads, Q, S) bool, True = not attended (or None).

        Returns:
            (B, Q, C).
        """
        if self.pre_norm:
            q = self.norm1(query)
            query = query + self.dropout(
                self.cross_attn(q + query_pos, memory + memory_pos, memory, attn_mask=attn_mask, need_weights=False)[0])
            q = self.norm2(query)
            qk = q + query_pos
            query = query + self.dropout(self.self_attn(qk, qk, q, need_weights=False)[0])
            return query + self.dropout(self._ffn(self.norm3(query)))
        q2 = self.cross_attn(query + query_pos, memory + memory_pos, memory, attn_mask=attn_mask, need_weights=False)[0]
        query = self.norm1(query + self.dropout(q2))
        qk = query + query_pos  # one tensor for queries and keys: one projection for both
        q2 = self.self_attn(qk, qk, query, need_weights=False)[0]
        query = self.norm2(query + self.dropout(q2))
        return self.norm3(query + self.dropout(self._ffn(query)))


class _MLP(nn.Sequential):
    """Linear layers with ReLU in between (none after the last)."""

    def __init__(self, dims: list[int]):
        layers = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class TextQueryTransformerDecoder(nn.Module):
    """Masked-attention decoder with K text-initialised queries (one per class).

    Args:
        in_channels: channels of the multi-scale memories (a 1x1 conv projects them when != hidden_dim).
        text_dim: width Dt of the text embeddings.
        num_classes: K; also the number of queries and of text tokens.
        hidden_dim: query width (256).
        num_heads: attention heads (8).
        dim_feedforward: FFN width (2048).
        dec_layers: number of layers (9); they cycle over the memory levels, coarsest first.
        mask_dim: channels of the pixel decoder's mask features (256).
        pre_norm: pre-norm layers instead of the published post-norm.
        num_feature_levels: number of memories (3).
        dropout: attention / FFN dropout (0 in the published setting).
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        text_dim: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        mask_dim: int = 256,
        pre_norm: bool = False,
        num_feature_levels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_classes < 1 or dec_layers < 1:
            raise ValueError(f"num_classes ({num_classes}) and dec_layers ({dec_layers}) must be >= 1")
        self.num_classes = num_classes
        self.text_dim = text_dim
        self.num_heads = num_heads
        self.num_feature_levels = num_feature_levels
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Identity())
        # query content from text, learned query position
        self.query_feat = _MLP([text_dim, hidden_dim, hidden_dim])
        self.query_embed = nn.Embedding(num_classes, hidden_dim)
        self.layers = nn.ModuleList(
            MaskedAttentionDecoderLayer(d_model=hidden_dim, num_heads=num_heads, dim_feedforward=dim_feedforward,
                                        dropout=dropout, pre_norm=pre_norm)
            for _ in range(dec_layers)
        )
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = _MLP([hidden_dim, hidden_dim, hidden_dim, mask_dim])

    def _predict(self, query, mask_features, attn_size):
        """query (B, K, C) -> logits (B, K, K+1), masks (B, K, h4, w4), attn_mask (B*heads, K, h*w) at attn_size."""
        out = self.decoder_norm(query)
        logits = self.class_embed(out)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(out), mask_features)
        attn = F.interpolate(masks, size=attn_size, mode="bilinear", align_corners=False)
        attn = (attn.sigmoid().flatten(2) < 0.5).detach()
        attn = attn.repeat_interleave(self.num_heads, dim=0)  # (B*heads, K, hw), batch-major like nn.MHA
        return logits, masks, attn

    def forward(self, multi_scale_features: list[torch.Tensor], mask_features: torch.Tensor, text: torch.Tensor):
        """
        Args:
            multi_scale_features: num_feature_levels tensors (B, in_channels, h_l, w_l), coarsest first.
            mask_features: (B, mask_dim, h4, w4).
            text: (B, K, text_dim).

        Returns:
            {"pred_logits": (B, K, K+1), "pred_masks": (B, K, h4, w4),
             "aux_outputs": [{"pred_logits", "pred_masks"}] * dec_layers} -- the aux sets come from the
            initial queries and layers 0..dec_layers-2; the top-level set from the last layer.
        """
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(
                f"expected {self.num_feature_levels} multi-scale features, got {len(multi_scale_features)}"
            )
        B = mask_features.shape[0]
        if text.dim() != 3 or text.shape != (B, self.num_classes, self.text_dim):
            raise ValueError(
                f"text must be (B={B}, K={self.num_classes}, text_dim={self.text_dim}), got {tuple(text.shape)}"
            )
        memories, memory_pos, sizes = [], [], []
        for lvl, x in enumerate(multi_scale_features):
            sizes.append(x.shape[-2:])
            memory_pos.append(self.pe_layer(x).flatten(2).transpose(1, 2))
            memory = self.input_proj[lvl](x).flatten(2).transpose(1, 2)
            memories.append(memory + self.level_embed.weight[lvl][None, None])

        query = self.query_feat(text)
        query_pos = self.query_embed.weight[None].expand(B, -1, -1)
        predictions = []
        logits, masks, attn_mask = self._predict(query, mask_features, sizes[0])
        predictions.append((logits, masks))
        for i, layer in enumerate(self.layers):
            lvl = i % self.num_feature_levels
            # a query whose whole row is masked attends everywhere instead
            attn_mask[attn_mask.all(-1)] = False
            query = layer(query, query_pos, memories[lvl], memory_pos[lvl], attn_mask)
            logits, masks, attn_mask = self._predict(query, mask_features, sizes[(i + 1) % self.num_feature_levels])
            predictions.append((logits, masks))
        return {
            "pred_logits": predictions[-1][0],
            "pred_masks": predictions[-1][1],
            "aux_outputs": [{"pred_logits": lg, "pred_masks": m} for lg, m in predictions[:-1]],
        }
