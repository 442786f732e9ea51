"""The fusion backbone (a detectron2 ``Backbone`` built from LazyConfig files)."""
from .fusion_backbone import MFuserBackbone, pyramid_output_shape

__all__ = ["MFuserBackbone", "pyramid_output_shape"]
