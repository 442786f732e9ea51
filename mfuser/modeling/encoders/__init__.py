"""Frozen foundation encoders with loaders for the official checkpoint files, organised by family.

Image encoders share the block-wise interface of :class:`FrozenImageEncoder` (``embed`` / ``block`` / ``finish``);
text encoders map class names to embeddings with learnable CoOp context vectors (:class:`PromptTextEncoder`).
Each family module holds its image tower, text tower, official key layout and key conversion: ``dinov2.py``,
``clip.py``, ``eva02.py``, ``siglip.py``; ``families.py`` lists the four official files (:data:`FAMILIES`),
``checkpoints.py`` reads files and reports loads, ``check.py`` checks a file against its family's encoders.
"""
from .base import FrozenImageEncoder
from .check import PretrainedCheck, check_pretrained
from .checkpoints import CheckpointError, CheckpointMismatchError, LoadReport, read_state_dict
from .clip import CLIPTextEncoder, CLIPVisionEncoder, clip_layout
from .dinov2 import DINOv2Encoder, dinov2_layout
from .eva02 import EVA02TextEncoder, EVA02VisionEncoder, eva02_layout
from .families import FAMILIES, KINDS, EncoderFamily, get_family
from .siglip import SigLIPTextEncoder, SigLIPTokenizer, SigLIPVisionEncoder, siglip_layout
from .text import PromptTextEncoder

__all__ = [
    "FrozenImageEncoder", "DINOv2Encoder", "CLIPVisionEncoder", "EVA02VisionEncoder", "SigLIPVisionEncoder",
    "PromptTextEncoder", "CLIPTextEncoder", "EVA02TextEncoder", "SigLIPTextEncoder", "SigLIPTokenizer",
    "CheckpointError", "CheckpointMismatchError", "LoadReport", "read_state_dict",
    "dinov2_layout", "clip_layout", "eva02_layout", "siglip_layout",
    "EncoderFamily", "FAMILIES", "KINDS", "get_family", "PretrainedCheck", "check_pretrained",
]
