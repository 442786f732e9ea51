"""mfuser.modeling.fusion: the Mamba fusion blocks (MVFuser between the encoders, MTEnhancer for the text)."""
from .mtenhancer import MTEnhancer, MTEnhancerBlock  # noqa: F401
from .mvfuser import GatedRMSNorm, MVFuser  # noqa: F401

__all__ = ["MVFuser", "MTEnhancer", "MTEnhancerBlock", "GatedRMSNorm"]
