"""mfuser.modeling.encoders"""
