"""The fusion backbone (registered in detectron2's BACKBONE_REGISTRY)."""
from .fusion_backbone import MFuserBackbone, pyramid_output_shape

__all__ = ["MFuserBackbone", "pyramid_output_shape"]
