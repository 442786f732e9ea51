"""mfuser.modeling.fusion"""
