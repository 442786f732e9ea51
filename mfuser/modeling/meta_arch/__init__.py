"""mfuser.modeling.meta_arch"""
