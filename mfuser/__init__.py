"""MFuser: domain-generalized semantic segmentation by Mamba-fusing a vision foundation model and a
vision-language model, as a Detectron2 project extension."""

import warnings

__version__ = "0.1.0"

# fvcore (imported by detectron2.engine) scripts a loss with torch.jit at import time, and torch >= 2.10 warns
# about torch.jit.script on every run: a warning users of MFuser cannot act on. Silence exactly that one.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
