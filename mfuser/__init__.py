"""MFuser: domain-generalized semantic segmentation by Mamba-fusing a vision foundation model and a
vision-language model, as a Detectron2 project extension."""

__version__ = "0.1.0"
