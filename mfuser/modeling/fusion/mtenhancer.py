"""MTEnhancer: refines the class-name text embeddings with the fused image embedding.

(docs/reference.md, "Text side", "Text encoders and MTEnhancer").
"""
from __future__ import annotations

import torch
from torch import nn

from mfuser.layers.attention import scaled_dot_product_attention

from .mvfuser import MVFuser

__all__ = ["MTEnhancer", "MTEnhancerBlock"]


class _SelfAttention(nn.Module):
    """Multi-head self-attention, q/k/v projections without bias, output projection with bias and dropout.

    The attention through :func:`mfuser.layers.attention.scaled_dot_product_attention` (no attention dropout)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MTEnhancer: width {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x):
        B, K, C = x.shape
        h = self.num_heads

        def heads(t):
            return t.reshape(B, K, h, C // h).transpose(1, 2)

        out = scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)))
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, K, C)))


class MTEnhancerBlock(nn.Module):
    """One pre-norm block: self-attention among the class tokens, the hybrid Mamba step, an MLP.

    Hybrid step: an MVFuser runs over ``[LN(text) ; visual memory ; LN(text)]`` and both the leading and the
    trailing text slices of its output are added to the text tokens (with a one-way scan the trailing copy is
    the one that has seen the visual tokens). Attribute names follow the reference (``cross_attn`` is the
    MVFuser that replaced tqdm's cross-attention).
    """

    def __init__(self, width: int, num_heads: int, d_state: int = 16, dropout: float = 0.1,
                 bidirectional: bool = False):
        super().__init__()
        self.self_attn = _SelfAttention(width, num_heads, dropout)
        self.cross_attn = MVFuser(width, d_state=d_state, bidirectional=bidirectional)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(width * 4, width)
        )

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        """x: (B, K, width) text tokens, mem: (B, M, width) visual memory -> (B, K, width)."""
        x = x + self.self_attn(self.norm1(x))
        t = self.norm2(x)
        K = x.shape[1]
        upd = self.cross_attn(torch.cat([t, mem, t], dim=1))
        x = x + upd[:, :K] + upd[:, -K:]
        return x + self.dropout(self.mlp(self.norm3(x)))


class MTEnhancer(nn.Module):
    """Hybrid attention-Mamba text enhancer: ``t' = t + gamma * delta(t, visual)``.

    ``delta``: text -> LayerNorm -> Linear(text_dim, width); visual [global ; dense] tokens -> LayerNorm ->
    Linear(visual_dim, width) -> LayerNorm (the memory); ``num_blocks`` :class:`MTEnhancerBlock`; then
    LayerNorm -> Linear(width, text_dim).

    ``gamma`` is a learnable (text_dim,) vector initialised to ``gamma_init`` (default 1e-4), so that t'
    starts as the frozen text embedding plus a small correction: the intent of DenseCLIP's ``gamma =
    1e-4 * ones``. The reference creates it that way but then overwrites it with trunc_normal (std 1), so
    its effective init is ~N(0, 1) per channel, which lets a random, untrained delta move the class
    embeddings by about their own size at step 0; we do not reproduce that accident.

    Parameter count for text_dim = visual_dim = 768, width 256, 4 heads, 1 block: 1,494,401 without gamma
    (the reference's "1.49 M"), 1,495,169 with it; text_dim = visual_dim = 1024 (SigLIP): 1,692,289 without
    gamma. Attribute names follow the reference ``ContextDecoder`` (memory_proj, text_proj, decoder, out_proj).

    Args:
        text_dim: Dt, width of the class embeddings.
        visual_dim: Dv, width of the fused image embedding tokens.
        width: internal width (256).
        num_heads: attention heads (4).
        num_blocks: number of blocks (the released configs use 1).
        d_state: state size of the blocks' MVFuser.
        dropout: dropout of attention output, MLP and MVFuser output.
        gamma_init: initial value of every entry of gamma.
        reference_init: re-initialise every Linear (also inside the MVFusers: in/x/dt/out projections) with
            trunc_normal(std 0.02) and zero biases, and LayerNorms to (1, 0), as the reference's ContextDecoder
            does (this also zeroes the MVFuser's dt bias, giving dt = softplus(0) ~ 0.69 at init). With False
            the MVFusers keep their Mamba initialisation (dt ~ logU[1e-3, 1e-1]).
        bidirectional: bidirectional MVFusers (see :class:`MVFuser`); off for parity.
    """

    def __init__(
        self,
        text_dim: int,
        visual_dim: int,
        width: int = 256,
        num_heads: int = 4,
        num_blocks: int = 1,
        d_state: int = 16,
        dropout: float = 0.1,
        gamma_init: float = 1e-4,
        reference_init: bool = True,
        bidirectional: bool = False,
    ):
        super().__init__()
        for name, value in (("text_dim", text_dim), ("visual_dim", visual_dim), ("width", width),
                            ("num_heads", num_heads), ("num_blocks", num_blocks)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MTEnhancer: {name} must be a positive int, got {value!r}")
        self.text_dim, self.visual_dim, self.width = text_dim, visual_dim, width
        self.memory_proj = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, width))
        self.decoder = nn.ModuleList(
            [MTEnhancerBlock(width, num_heads, d_state, dropout, bidirectional) for _ in range(num_blocks)]
        )
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, text_dim))
        if reference_init:
            self.apply(self._reference_init)
        self.gamma = nn.Parameter(torch.full((text_dim,), float(gamma_init)))

    @staticmethod
    def _reference_init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def delta(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """The correction before gamma: text (B, K, Dt), visual (B, M, Dv) -> (B, K, Dt)."""
        mem = self.memory_proj(visual)
        x = self.text_proj(text)
        for block in self.decoder:
            x = block(x, mem)
        return self.out_proj(x)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """text: (K, Dt) shared by the batch or (B, K, Dt); visual: (B, 1 + HW, Dv) -> t' (B, K, Dt)."""
        if visual.dim() != 3 or visual.shape[-1] != self.visual_dim:
            raise ValueError(f"MTEnhancer: visual must be (B, 1+HW, Dv={self.visual_dim}), got {tuple(visual.shape)}")
        B = visual.shape[0]
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(B, -1, -1)
        if text.dim() != 3 or text.shape[-1] != self.text_dim or text.shape[0] != B:
            raise ValueError(
                f"MTEnhancer: text must be (K, Dt={self.text_dim}) or (B={B}, K, Dt={self.text_dim}), "
                f"got {tuple(text.shape)}")
        if text.shape[1] < 1 or visual.shape[1] < 1:
            raise ValueError("MTEnhancer: text and visual need at least one token each")
        return text + self.gamma * self.delta(text, visual)
