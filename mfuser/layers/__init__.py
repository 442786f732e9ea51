"""Low-level ops: the selective scan (Mamba) and multi-scale deformable attention."""
