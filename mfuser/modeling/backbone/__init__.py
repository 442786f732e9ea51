"""mfuser.modeling.backbone"""
