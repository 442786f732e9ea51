"""The four official encoder files MFuser loads, one row per family (docs/reference.md, "Encoders and token grids").

======  ======================================  ===========  ====================================================
name    official file                           container    towers that load it
======  ======================================  ===========  ====================================================
dinov2  ``dinov2_vitl14_pretrain.pth``          torch.save   :class:`DINOv2Encoder`
clip    ``ViT-L-14-336px.pt``                   torchscript  :class:`CLIPVisionEncoder`, :class:`CLIPTextEncoder`
eva02   ``EVA02_CLIP_L_336_psz14_s6B.pt``       torch.save   :class:`EVA02VisionEncoder`, :class:`EVA02TextEncoder`
siglip  ``siglip_vitl16_384.pth``               torch.save   :class:`SigLIPVisionEncoder`, :class:`SigLIPTextEncoder`
======  ======================================  ===========  ====================================================

:data:`FAMILIES` is the one table of these facts: ``tools/check_pretrained.py`` (through
:func:`mfuser.modeling.encoders.check.check_pretrained`), the tests and the test-file writer
(:mod:`mfuser.utils.testing`) all read it. Each row also names a *tiny* size of its file (same key names, 2 blocks,
small widths) and the encoder arguments that load such a file, so tests exercise the real loaders in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping

from torch import nn

from .clip import CLIPTextEncoder, CLIPVisionEncoder, clip_layout
from .dinov2 import DINOv2Encoder, dinov2_layout
from .eva02 import EVA02TextEncoder, EVA02VisionEncoder, eva02_layout
from .siglip import SigLIPTextEncoder, SigLIPVisionEncoder, siglip_layout

__all__ = ["EncoderFamily", "FAMILIES", "KINDS", "TOWER_LABELS", "get_family"]

# Human names of the towers, as printed by the pretrained-file check.
TOWER_LABELS = {"vision": "image tower", "text": "text tower"}


@dataclass(frozen=True)
class EncoderFamily:
    """One official encoder file and the encoders that load it.

    Attributes:
        name: the family's short name (``--kind`` of ``tools/check_pretrained.py``).
        file_name: the official file's name (its key manifest is ``<stem>.json``).
        container: the file's format as :func:`~mfuser.modeling.encoders.checkpoints.read_state_dict` reports it,
            ``"torch.save"`` (flat state dict) or ``"torchscript"`` (OpenAI's archive).
        layout: ``layout(**kwargs) -> OrderedDict{key: (shape, dtype)}``, the file's official key layout; the
            defaults give the published file, keyword arguments scale it (same names).
        towers: ``{"vision" | "text": encoder class}``: the encoders that each load their part of the file.
        load_only: per tower, constructor arguments for building it only to load weights (SigLIP's text tower
            without a tokenizer file).
        tiny_layout: ``layout`` arguments of the tiny test file (same names, 2 blocks, small widths).
        tiny_towers: per tower, constructor arguments of the tiny encoder that loads the tiny file.
    """

    name: str
    file_name: str
    container: str
    layout: Callable[..., Dict[str, tuple]]
    towers: Mapping[str, type]
    load_only: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tiny_layout: Mapping[str, Any] = field(default_factory=dict)
    tiny_towers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def build(self, tower: str, **kwargs) -> nn.Module:
        """The ``tower`` encoder ("vision" or "text"), built with its ``load_only`` arguments updated by ``kwargs``
        (no arguments: full size)."""
        if tower not in self.towers:
            raise ValueError(f"{self.name!r} has no {tower!r} tower (towers: {sorted(self.towers)})")
        return self.towers[tower](**{**self.load_only.get(tower, {}), **kwargs})


FAMILIES: Dict[str, EncoderFamily] = {
    f.name: f
    for f in (
        EncoderFamily(
            name="dinov2", file_name="dinov2_vitl14_pretrain.pth", container="torch.save", layout=dinov2_layout,
            towers={"vision": DINOv2Encoder},
            tiny_layout=dict(embed_dim=32, depth=2, patch_size=14, img_size=70),
            tiny_towers={"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, img_size=64)},
        ),
        EncoderFamily(
            name="clip", file_name="ViT-L-14-336px.pt", container="torchscript", layout=clip_layout,
            towers={"vision": CLIPVisionEncoder, "text": CLIPTextEncoder},
            tiny_layout=dict(embed_dim=24, image_resolution=70, vision_layers=2, vision_width=32,
                             vision_patch_size=14, context_length=77, vocab_size=49408, transformer_width=32,
                             transformer_layers=2),
            tiny_towers={"vision": dict(width=32, layers=2, heads=2, patch_size=16, img_size=64, output_dim=24),
                         "text": dict(width=32, layers=2, heads=2, output_dim=24)},
        ),
        EncoderFamily(
            name="eva02", file_name="EVA02_CLIP_L_336_psz14_s6B.pt", container="torch.save", layout=eva02_layout,
            towers={"vision": EVA02VisionEncoder, "text": EVA02TextEncoder},
            tiny_layout=dict(embed_dim=24, vision_width=32, vision_layers=2, vision_heads=2, vision_mlp_hidden=85,
                             patch_size=14, img_size=70, context_length=77, vocab_size=49408, text_width=32,
                             text_layers=2),
            tiny_towers={"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=14, img_size=56,
                                        output_dim=24),
                         "text": dict(width=32, layers=2, heads=2, output_dim=24)},
        ),
        EncoderFamily(
            name="siglip", file_name="siglip_vitl16_384.pth", container="torch.save", layout=siglip_layout,
            towers={"vision": SigLIPVisionEncoder, "text": SigLIPTextEncoder},
            load_only={"text": dict(tokenizer_path=None)},  # weights only: the tokenizer is not part of the file
            tiny_layout=dict(vision_width=32, vision_layers=2, vision_mlp=128, patch_size=16, img_size=80,
                             text_width=32, text_layers=2, text_mlp=128, vocab_size=64, max_positions=64,
                             embed_dim=32),
            tiny_towers={"vision": dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, img_size=64),
                         "text": dict(width=32, layers=2, heads=2, vocab_size=64, output_dim=32)},
        ),
    )
}

KINDS = tuple(FAMILIES)


def get_family(kind: str) -> EncoderFamily:
    """The row of ``kind`` (``ValueError`` naming the known kinds otherwise)."""
    if kind not in FAMILIES:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return FAMILIES[kind]
