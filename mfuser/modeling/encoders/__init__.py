"""Frozen foundation encoders with loaders for the official checkpoint files.

Image encoders share the block-wise interface of :class:`FrozenImageEncoder` (``embed`` / ``block`` / ``finish``);
text encoders map class names to embeddings with learnable CoOp context vectors.
"""
from .base import FrozenImageEncoder
from .checkpoints import CheckpointError, CheckpointMismatchError, LoadReport, read_state_dict
from .clip import CLIPVisionEncoder
from .dinov2 import DINOv2Encoder
from .eva02 import EVA02VisionEncoder
from .siglip import SigLIPVisionEncoder
from .text import CLIPTextEncoder, EVA02TextEncoder, PromptTextEncoder, SigLIPTextEncoder, SigLIPTokenizer

__all__ = [
    "FrozenImageEncoder", "DINOv2Encoder", "CLIPVisionEncoder", "EVA02VisionEncoder", "SigLIPVisionEncoder",
    "PromptTextEncoder", "CLIPTextEncoder", "EVA02TextEncoder", "SigLIPTextEncoder", "SigLIPTokenizer",
    "CheckpointError", "CheckpointMismatchError", "LoadReport", "read_state_dict",
]
