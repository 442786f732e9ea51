"""Models: encoders, fusion blocks, backbone, heads and the MFuser meta-architecture."""
