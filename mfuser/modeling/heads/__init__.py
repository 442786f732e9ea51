"""mfuser.modeling.heads"""
