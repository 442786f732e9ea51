"""MFuserBackbone: a frozen VFM and a frozen VLM run block by block, fused by one MVFuser per block.

Reference: docs/reference.md, "Equal token grids", "Fusion", "Pyramid and final embedding",
"Fusion backbone and pyramid".
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.layers import NaiveSyncBatchNorm, ShapeSpec, get_norm
from detectron2.modeling import Backbone
from torch.utils.checkpoint import checkpoint

from mfuser.modeling.fusion import MVFuser

__all__ = ["MFuserBackbone", "conv_transpose_2x2", "pyramid_output_shape"]

_PYRAMID_NAMES = ("res2", "res3", "res4", "res5")


def pyramid_output_shape(channels: int) -> dict[str, ShapeSpec]:
    """The backbone's ``output_shape()`` without building it (for LazyConfig files of the head).

    Strides are nominal (4/8/16/32, as Detectron2 heads expect); for /14 encoders the true strides
    are 3.5/7/14/28, which the head never relies on (it reads sizes from the tensors).
    """
    return {name: ShapeSpec(channels=channels, stride=4 * 2**i) for i, name in enumerate(_PYRAMID_NAMES)}


class FP32NaiveSyncBatchNorm(NaiveSyncBatchNorm):
    """detectron2's ``NaiveSyncBatchNorm`` (syncs over NCCL and gloo; plain BN in one process), always in fp32.

    detectron2 upcasts only fp16 inputs; under bf16 autocast ``E[x^2] - E[x]^2`` in bf16 can go negative.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


def _pyramid_norm(norm: str, channels: int) -> nn.Module:
    return FP32NaiveSyncBatchNorm(channels) if norm == "naiveSyncBN" else get_norm(norm, channels)


def conv_transpose_2x2(deconv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``deconv(x)`` for a ``ConvTranspose2d(kernel_size=2, stride=2)`` computed as one matmul + a pixel shuffle.

    Why not ``deconv(x)``: with kernel == stride the output pixels do not overlap, so the transposed conv is
    exactly ``(B*h*w, Cin) @ (Cin, Cout*2*2)`` followed by a rearrangement, but PyTorch's CPU ConvTranspose
    path does not exploit this (measured on the 2048-channel pyramid, one thread: 72 -> 144 2.0 s -> 1.4 s,
    36 -> 72 0.49 s -> 0.34 s, same output within 4e-6). ``deconv`` stays the parameter holder, so state-dict
    keys are unchanged, and fvcore counts the same FLOPs (``aten::linear``: B*h*w * Cin * 4*Cout, as for the
    transposed conv; the bias is not counted by either).

    Args:
        deconv: a ConvTranspose2d with kernel_size (2, 2), stride (2, 2), no padding / output padding,
            dilation 1, groups 1.
        x: (B, Cin, h, w).

    Returns:
        (B, Cout, 2h, 2w), contiguous, equal to ``deconv(x)``.
    """
    if (
        tuple(deconv.kernel_size) != (2, 2) or tuple(deconv.stride) != (2, 2) or tuple(deconv.padding) != (0, 0)
        or tuple(deconv.output_padding) != (0, 0) or tuple(deconv.dilation) != (1, 1) or deconv.groups != 1
    ):
        raise ValueError(f"conv_transpose_2x2 needs a ConvTranspose2d(kernel_size=2, stride=2) only; got {deconv}")
    if x.dim() != 4 or x.shape[1] != deconv.in_channels:
        raise ValueError(f"x must be (B, {deconv.in_channels}, h, w); got {tuple(x.shape)}")
    B, c_in, h, w = x.shape
    c_out = deconv.out_channels
    # weight (Cin, Cout, 2, 2) -> (Cin, Cout*4) is a view; F.linear takes its transpose without a copy
    weight = deconv.weight.reshape(c_in, c_out * 4).t()
    bias = None if deconv.bias is None else deconv.bias.repeat_interleave(4)
    y = F.linear(x.permute(0, 2, 3, 1).reshape(B * h * w, c_in), weight, bias)  # (B*h*w, Cout*2*2)
    # (B, h, w, Cout, di, dj) -> (B, Cout, h, di, w, dj) = (B, Cout, 2h, 2w)
    return y.view(B, h, w, c_out, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, c_out, 2 * h, 2 * w)


class _Pyramid(nn.Module):
    """The simple deconv pyramid: x4 (two ConvTranspose), x2, identity, max-pool.

    (docs/reference.md, "Fusion backbone and pyramid").

    The ConvTranspose2d modules hold the parameters (reference state-dict keys); ``forward`` computes them
    with :func:`conv_transpose_2x2` (faster on CPU, same result).
    """

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            _pyramid_norm(norm, channels),
            nn.GELU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.down2 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, taps: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """taps: 4 maps (B, C, h, w) -> {"res2": (B, C, 4h, 4w), "res3": 2x, "res4": 1x, "res5": 1/2x}."""
        deconv1, norm, act, deconv2 = self.up4
        res2 = conv_transpose_2x2(deconv2, act(norm(conv_transpose_2x2(deconv1, taps[0]))))
        res3 = conv_transpose_2x2(self.up2, taps[1])
        return dict(zip(_PYRAMID_NAMES, (res2, res3, taps[2], self.down2(taps[3]))))


class MFuserBackbone(Backbone):
    """Frozen VFM (DINOv2) + frozen VLM image tower, fused after every block by an MVFuser.

    A detectron2 ``Backbone`` (``output_shape()``), built from LazyConfig files with its encoder modules as
    arguments; not registered in ``BACKBONE_REGISTRY``, since ``build_backbone(cfg)`` could not build those
    modules from a yacs config.

    At block ``i`` both encoders run their own block, then MVFuser_i runs over the sequence
    concatenation ``[vfm tokens ; vlm tokens]`` and its output is split and added back to both
    streams. The streams at ``tap_indices`` give channel-concatenated ``2C``-channel grids that a
    deconv pyramid turns into ``res2..res5`` (strides 4/8/16/32). The final streams give the fused
    embedding in the VLM's text space.

    Only the fusers, the optional projections and the pyramid are trainable.
    """

    def __init__(
        self,
        *,
        vfm: nn.Module,
        vlm: nn.Module,
        tap_indices: Sequence[int] = (7, 11, 15, 23),
        d_state: int = 16,
        d_conv: int = 3,
        bidirectional: bool = False,
        fusion_projections: bool = False,
        pyramid_norm: str = "naiveSyncBN",
        activation_checkpointing: bool = False,
        frozen_encoders_eval: bool = False,
    ):
        """
        Args:
            vfm: block-wise DINOv2 encoder (``mfuser.modeling.encoders.DINOv2Encoder``).
            vlm: block-wise VLM image encoder (CLIP / EVA02 / SigLIP ``*VisionEncoder``) of the same
                token width, depth and patch size as ``vfm``.
            tap_indices: 0-based blocks whose fused outputs feed res2..res5 (4 entries, non-decreasing;
                published: 7, 11, 15, 23).
            d_state, d_conv, bidirectional: MVFuser settings (reference: 16, 3, one-way).
            fusion_projections: the CLIP variant's per-block ``Linear(C, C)`` on the VFM tokens
                into (``proj_in``) and out of (``proj_out``) each fuser, and ``proj_final`` on the
                last VFM tokens added to the VLM's final embedding. Without it (EVA02, SigLIP)
                the VFM's final LayerNorm output is added instead.
            pyramid_norm: detectron2 norm name for the stride-4 branch (reference: SyncBN). The default
                ``naiveSyncBN`` is :class:`FP32NaiveSyncBatchNorm`: it also syncs over gloo on CPU, is plain
                BN in one process, and stays fp32 under autocast.
            activation_checkpointing: recompute each block (both encoders + its fuser) in the
                backward pass instead of storing its activations.
            frozen_encoders_eval: keep the frozen encoders in eval mode while the model trains (True:
                deterministic frozen features). False (the official code) lets them follow the model's mode,
                so stochastic depth configured in an encoder (the published CLIP config: drop_path_rate 0.1)
                fires on its frozen blocks in training. The encoders have no other train-mode behaviour.
        """
        super().__init__()
        for attr in ("embed_dim", "num_blocks", "patch_size"):
            a, b = getattr(vfm, attr), getattr(vlm, attr)
            if a != b:
                raise ValueError(f"vfm.{attr}={a} but vlm.{attr}={b}; the two streams must match to be fused")
        tap_indices = tuple(int(i) for i in tap_indices)
        if len(tap_indices) != 4 or list(tap_indices) != sorted(tap_indices) or not (
            0 <= tap_indices[0] and tap_indices[-1] < vfm.num_blocks
        ):
            raise ValueError(
                f"tap_indices must be 4 non-decreasing block indices in [0, {vfm.num_blocks}); got {tap_indices}"
            )
        self.vfm = vfm
        self.vlm = vlm
        for encoder in (self.vfm, self.vlm):
            encoder.requires_grad_(False)
        self.tap_indices = tap_indices
        self.activation_checkpointing = activation_checkpointing
        self.frozen_encoders_eval = frozen_encoders_eval
        width = vfm.embed_dim
        self.fusers = nn.ModuleList(
            MVFuser(width, d_state=d_state, d_conv=d_conv, bidirectional=bidirectional) for _ in range(vfm.num_blocks)
        )
        self.fusion_projections = fusion_projections
        if fusion_projections:
            self.proj_in = nn.ModuleList(nn.Linear(width, width) for _ in range(vfm.num_blocks))
            self.proj_out = nn.ModuleList(nn.Linear(width, width) for _ in range(vfm.num_blocks))
            self.proj_final = nn.Linear(width, width)
        self.pyramid = _Pyramid(2 * width, pyramid_norm)
        self._out_features = list(_PYRAMID_NAMES)
        self._out_feature_channels = {name: 2 * width for name in _PYRAMID_NAMES}
        self._out_feature_strides = {name: 4 * 2**i for i, name in enumerate(_PYRAMID_NAMES)}

    @property
    def out_dim(self) -> int:
        """Width of the fused embedding (the VLM's text space)."""
        return self.vlm.out_dim

    def train(self, mode: bool = True):
        """With ``frozen_encoders_eval`` the frozen encoders stay in eval mode (no drop-path noise)."""
        super().train(mode)
        if self.frozen_encoders_eval:
            self.vfm.eval()
            self.vlm.eval()
        return self

    def _fuse_block(self, i: int, xv: torch.Tensor, xl: torch.Tensor, grid: tuple[int, int]):
        xv = self.vfm.block(i, xv, grid)
        xl = self.vlm.block(i, xl, grid)
        num_vfm = xv.shape[1]
        vfm_in = self.proj_in[i](xv) if self.fusion_projections else xv
        update = self.fusers[i](torch.cat([vfm_in, xl], dim=1))
        dv, dl = update[:, :num_vfm], update[:, num_vfm:]
        if self.fusion_projections:
            dv = self.proj_out[i](dv)
        return xv + dv, xl + dl

    def _patch_grid(self, tokens: torch.Tensor, num_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
        """(B, P + h*w, C) -> (B, C, h, w)."""
        patches = tokens[:, num_prefix:]
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)

    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: (B, 3, H, W) float RGB in 0..255 (each encoder normalises on its own).

        Returns:
            dict with "res2".."res5": (B, 2C, 4h, 2h, h, h/2)-sized maps for a (h, w) token grid,
            and "embedding": (global (B, 1, Dt), dense (B, Dt, h, w)) in the VLM text space.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W); got {tuple(images.shape)}")
        hw = tuple(images.shape[-2:])
        grid = tuple(self.vfm.grid(hw))
        if tuple(self.vlm.grid(hw)) != grid:
            raise ValueError(f"token grids differ for input {hw}: vfm {grid} vs vlm {tuple(self.vlm.grid(hw))}")
        xv = self.vfm.embed(images)
        xl = self.vlm.embed(images)
        tapped = {}
        for i in range(len(self.fusers)):
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                xv, xl = checkpoint(self._fuse_block, i, xv, xl, grid, use_reentrant=False)
            else:
                xv, xl = self._fuse_block(i, xv, xl, grid)
            if i in self.tap_indices:
                tapped[i] = torch.cat(
                    [
                        self._patch_grid(xv, self.vfm.num_prefix_tokens, grid),
                        self._patch_grid(xl, self.vlm.num_prefix_tokens, grid),
                    ],
                    dim=1,
                )
        outputs = self.pyramid([tapped[i] for i in self.tap_indices])
        residual = self.proj_final(xv) if self.fusion_projections else self.vfm.final_norm(xv)
        outputs["embedding"] = self.vlm.finish(xl, grid, residual=residual)
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }

