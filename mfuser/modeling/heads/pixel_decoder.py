"""Text-conditioned multi-scale deformable-attention pixel decoder (tqdm / MFuser, docs/reference.md, "Pixel decoder").

A Mask2Former ``MSDeformAttnPixelDecoder`` whose encoder layers add, between the deformable
self-attention and the FFN, a cross-attention from every pixel token to the (projected) class text
embeddings ("text-to-pixel attention").
"""
from __future__ import annotations

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn

from mfuser.layers import MSDeformAttn
from mfuser.layers.attention import MultiheadAttention

from .position_encoding import PositionEmbeddingSine

__all__ = ["MFuserPixelDecoder", "TextPixelDecoderLayer"]


class TextPixelDecoderLayer(nn.Module):
    """One encoder layer, post-norm: MSDeformAttn self-attn -> LN -> cross-attn to text -> LN -> FFN -> LN.

    The cross-attention is :class:`mfuser.layers.attention.MultiheadAttention` (``nn.MultiheadAttention``'s
    parameters and state-dict keys; the same function, faster on a CPU at small sizes).

    Args:
        d_model: token width.
        num_heads: heads of both attentions.
        num_levels, num_points: MSDeformAttn levels and points.
        ffn_dim: FFN hidden width (ReLU).
        dropout: dropout after each sub-layer and inside the FFN.
    """

    def __init__(self, *, d_model: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4,
                 ffn_dim: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, num_levels, num_heads, num_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.dropout4 = nn.Dropout(dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, text, text_pos):
        """
        Args:
            src, pos: (B, S, C) pixel tokens of all levels and their position (+ level) embedding.
            reference_points: (B, S, L, 2); spatial_shapes (L, 2); level_start_index (L,).
            text: (B, K, C) projected text tokens (keys and values); text_pos: (1 or B, K, C) key position.

        Returns:
            (B, S, C).
        """
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.cross_attn(src + pos, text + text_pos, text, need_weights=False)[0]
        src = self.norm2(src + self.dropout2(src2))
        src2 = self.linear2(self.dropout3(F.relu(self.linear1(src))))
        return self.norm3(src + self.dropout4(src2))


class MFuserPixelDecoder(nn.Module):
    """Pixel decoder: input projections, text-conditioned deformable encoder over the coarse levels,
    FPN down to ``common_stride``, mask features.

    Args:
        input_shape: ShapeSpec (channels, stride) per backbone feature name (e.g. res2..res5).
        text_dim: width Dt of the text embeddings.
        num_text_tokens: K, the number of text tokens (= classes); sets the learnable text position embedding.
        conv_dim: token / feature width (256).
        mask_dim: channels of the mask features (256).
        num_layers: encoder layers (6).
        num_heads, num_points: MSDeformAttn / cross-attention heads and deformable points.
        ffn_dim: encoder FFN width (2048, as the official code builds it: its config's deprecated
            ``feedforward_channels=2048`` overrides the ``ffn_cfgs`` value 1024 that the reference notes quoted).
        encoder_post_norm: LayerNorm on the encoder's output before it feeds the multi-scale memories and the
            FPN (the official encoder's ``post_norm``; True). False drops it (an identity at initialisation,
            a different function once trained: kept only for checkpoints trained without it).
        dropout: encoder dropout.
        transformer_in_features: features that go through the encoder (their order is irrelevant; they
            are processed from the coarsest to the finest).
        common_stride: stride of the mask features; every other feature with a stride in
            [common_stride, finest transformer stride) gets an FPN lateral + output conv.
    """

    def __init__(
        self,
        *,
        input_shape: dict[str, ShapeSpec],
        text_dim: int,
        num_text_tokens: int,
        conv_dim: int = 256,
        mask_dim: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 2048,
        encoder_post_norm: bool = True,
        dropout: float = 0.0,
        transformer_in_features=("res3", "res4", "res5"),
        common_stride: int = 4,
    ):
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(f"transformer_in_features {missing} not in input_shape (has {sorted(input_shape)})")
        if len(transformer_in_features) == 0:
            raise ValueError("transformer_in_features must not be empty")
        # coarsest first (res5, res4, res3), like Mask2Former
        self.transformer_in_features = sorted(transformer_in_features, key=lambda k: -input_shape[k].stride)
        min_stride = input_shape[self.transformer_in_features[-1]].stride
        # FPN levels: finer than the encoder, not finer than common_stride; processed coarse -> fine
        self.fpn_features = sorted(
            [k for k, s in input_shape.items()
             if k not in self.transformer_in_features and common_stride <= s.stride < min_stride],
            key=lambda k: -input_shape[k].stride,
        )
        if min(input_shape[k].stride for k in [*self.transformer_in_features, *self.fpn_features]) != common_stride:
            raise ValueError(f"no input feature has common_stride={common_stride}: input_shape={input_shape}")
        self.num_text_tokens = num_text_tokens
        self.text_dim = text_dim
        self.conv_dim = conv_dim
        self.mask_dim = mask_dim
        self.common_stride = common_stride
        n_levels = len(self.transformer_in_features)

        self.input_proj = nn.ModuleList()
        for k in self.transformer_in_features:
            proj = nn.Sequential(nn.Conv2d(input_shape[k].channels, conv_dim, kernel_size=1),
                                 nn.GroupNorm(32, conv_dim))
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
            self.input_proj.append(proj)

        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.level_embed = nn.Parameter(torch.empty(n_levels, conv_dim))
        self.text_proj = nn.Linear(text_dim, conv_dim)
        self.text_pos = nn.Embedding(num_text_tokens, conv_dim)
        self.layers = nn.ModuleList(
            TextPixelDecoderLayer(d_model=conv_dim, num_heads=num_heads, num_levels=n_levels,
                                  num_points=num_points, ffn_dim=ffn_dim, dropout=dropout)
            for _ in range(num_layers)
        )
        self.encoder_norm = nn.LayerNorm(conv_dim) if encoder_post_norm else None

        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        use_bias = False  # followed by GroupNorm
        for k in self.fpn_features:
            lateral = Conv2d(input_shape[k].channels, conv_dim, kernel_size=1, bias=use_bias,
                             norm=get_norm("GN", conv_dim))
            output = Conv2d(conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias,
                            norm=get_norm("GN", conv_dim), activation=F.relu)
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)
        self._reset_encoder_parameters()

    def _reset_encoder_parameters(self) -> None:
        # mmdet Mask2FormerPixelDecoder: xavier-normal for the encoder's matrices, then MSDeformAttn's own init
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for m in self.layers.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def _reference_points(sizes: list[tuple[int, int]], batch: int, device, dtype) -> torch.Tensor:
        """Pixel centres of every level, normalised to [0, 1]: (B, sum HW, L, 2) (no padding -> same on all levels)."""
        refs = []
        for h, w in sizes:
            ref_y, ref_x = torch.meshgrid(
                (torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
                (torch.arange(w, device=device, dtype=dtype) + 0.5) / w,
                indexing="ij",
            )
            refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        ref = torch.cat(refs, 0)
        return ref[None, :, None, :].expand(batch, -1, len(sizes), -1)

    def forward(self, features: dict[str, torch.Tensor], text: torch.Tensor):
        """
        Args:
            features: name -> (B, C_name, H_name, W_name) for every name in transformer_in_features and the
                FPN features (res2..res5 at strides 4/8/16/32 by default). Any spatial sizes.
            text: (B, K, text_dim) class text embeddings, K = num_text_tokens.

        Returns:
            mask_features: (B, mask_dim, H_4, W_4), the size of the finest (common_stride) feature.
            multi_scale_features: list of len(transformer_in_features) tensors (B, conv_dim, h, w), coarsest first
                (1/32, 1/16, 1/8).
        """
        for k in [*self.transformer_in_features, *self.fpn_features]:
            if k not in features:
                raise KeyError(f"MFuserPixelDecoder: feature '{k}' missing from features (got {sorted(features)})")
        B = features[self.transformer_in_features[0]].shape[0]
        if text.dim() != 3 or text.shape[0] != B or text.shape[1] != self.num_text_tokens \
                or text.shape[2] != self.text_dim:
            raise ValueError(
                f"text must be (B={B}, K={self.num_text_tokens}, text_dim={self.text_dim}), got {tuple(text.shape)}"
            )

        srcs, poss, sizes = [], [], []
        for lvl, k in enumerate(self.transformer_in_features):
            x = self.input_proj[lvl](features[k])
            h, w = x.shape[-2:]
            sizes.append((h, w))
            pos = self.pe_layer(x).flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
            srcs.append(x.flatten(2).transpose(1, 2))
            poss.append(pos)
        src = torch.cat(srcs, 1)
        pos = torch.cat(poss, 1)
        # kept on the CPU: MSDeformAttn only reads them as Python ints (no device sync)
        spatial_shapes = torch.as_tensor(sizes, dtype=torch.long)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        # float32 also under bf16 autocast: pixel centres (j + 0.5) / W in bf16 would be off by up to a quarter pixel
        reference_points = self._reference_points(sizes, B, src.device, torch.promote_types(src.dtype, torch.float32))

        text_tokens = self.text_proj(text)
        text_pos = self.text_pos.weight[None]
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, text_tokens, text_pos)
        if self.encoder_norm is not None:
            src = self.encoder_norm(src)

        multi_scale_features = [
            y.transpose(1, 2).reshape(B, self.conv_dim, h, w)
            for y, (h, w) in zip(src.split([h * w for h, w in sizes], dim=1), sizes)
        ]
        out = multi_scale_features[-1]
        for k, lateral_conv, output_conv in zip(self.fpn_features, self.lateral_convs, self.output_convs):
            cur = lateral_conv(features[k])
            out = output_conv(cur + F.interpolate(out, size=cur.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(out), multi_scale_features
