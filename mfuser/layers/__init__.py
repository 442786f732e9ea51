"""Low-level ops: the selective scan (Mamba) and multi-scale deformable attention."""
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core, ms_deform_attn_core_pytorch  # noqa: F401
from .selective_scan import select_backend, selective_scan, selective_scan_ref  # noqa: F401
