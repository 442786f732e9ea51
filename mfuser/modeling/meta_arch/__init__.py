"""The MFuser meta-architecture (built from LazyConfig files; see :class:`MFuser`)."""
from .mfuser import MFuser, semantic_inference

__all__ = ["MFuser", "semantic_inference"]
