"""The MFuser meta-architecture (registered in detectron2's META_ARCH_REGISTRY)."""
from .mfuser import MFuser, semantic_inference

__all__ = ["MFuser", "semantic_inference"]
