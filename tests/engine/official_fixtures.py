"""Official MFuser checkpoints written by the tests, in the exact key layout of the official segmentor.

The layout is built independently of the converter under test, from two sources:

* the frozen encoders: the official *pretrained-file* layouts (``mfuser.modeling.encoders.*_layout``,
  themselves checked against the file manifests) at the sizes the model was built with, with the file prefix
  replaced by the official segmentor's (``visual.`` -> ``backbone.``, DINOv2 under ``backbone.dinov2.``, the text
  tower under ``text_encoder.``), plus the non-persistent buffers that mmcv also saves;
* the trainable parts: every non-frozen state-dict key of the model under its official name.

``test_official_checkpoint.py`` checks at full size that the result has exactly the keys and shapes of
``shared/reference/manifests/mfuser_official_*.json``; at tiny size the same code then writes real files.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from mfuser.engine.official_checkpoint import model_variant, official_name
from mfuser.modeling.encoders import clip_layout, dinov2_layout, eva02_layout, siglip_layout

_META = torch.device("meta")


def _tensor(shape, dtype, device, gen):
    if device == _META:
        return torch.empty(shape, dtype=dtype, device=_META)
    if dtype == torch.int64:
        return torch.zeros(shape, dtype=dtype)
    return (torch.randn(shape, generator=gen) * 0.02 + (1.0 if len(shape) == 1 else 0.0)).to(torch.float32)


def frozen_file_layouts(model) -> Dict[str, Dict[str, Tuple[tuple, torch.dtype]]]:
    """Pretrained-file layouts ({name: (shape, dtype)}) of the model's three frozen parts at its built sizes."""
    variant = model_variant(model)
    vfm, vlm, text = model.backbone.vfm, model.backbone.vlm, model.text_encoder
    gv = vfm.built_grid[0]
    ctx = text.tower.positional_embedding.shape[0]
    tw, tl, vocab, tout = text.tower.width, text.tower.transformer.layers, text.tower.vocab_size, text.tower.output_dim
    layouts = {"vfm": dinov2_layout(embed_dim=vfm.embed_dim, depth=vfm.num_blocks, patch_size=vfm.patch_size,
                                    img_size=gv * vfm.patch_size, mlp_ratio=vfm.mlp_ratio)}
    g = vlm.built_grid[0]
    if variant == "clip":
        full = clip_layout(embed_dim=vlm.out_dim, image_resolution=g * vlm.patch_size, vision_layers=vlm.num_blocks,
                           vision_width=vlm.embed_dim, vision_patch_size=vlm.patch_size, context_length=ctx,
                           vocab_size=vocab, transformer_width=tw, transformer_layers=tl)
        extras = ("logit_scale", "input_resolution", "context_length", "vocab_size")
        layouts["vlm"] = {k: v for k, v in full.items() if k.startswith("visual.")}
        layouts["text"] = {k: v for k, v in full.items() if not k.startswith("visual.") and k not in extras}
    elif variant == "eva02":
        full = eva02_layout(embed_dim=vlm.out_dim, vision_width=vlm.embed_dim, vision_layers=vlm.num_blocks,
                            vision_heads=vlm.num_heads, vision_mlp_hidden=vlm.mlp_hidden, patch_size=vlm.patch_size,
                            img_size=g * vlm.patch_size, context_length=ctx, vocab_size=vocab, text_width=tw,
                            text_layers=tl)
        layouts["vlm"] = {k: v for k, v in full.items() if k.startswith("visual.")}
        layouts["text"] = {k: v for k, v in full.items() if k.startswith("text.")}
    else:
        full = siglip_layout(vision_width=vlm.embed_dim, vision_layers=vlm.num_blocks, vision_mlp=vlm.mlp_hidden,
                             patch_size=vlm.patch_size, img_size=g * vlm.patch_size, text_width=tw, text_layers=tl,
                             text_mlp=text.tower.transformer.resblocks[0].mlp.c_fc.out_features, vocab_size=vocab,
                             max_positions=ctx, embed_dim=tout)
        layouts["vlm"] = {k: v for k, v in full.items() if k.startswith("vision_model.")}
        layouts["text"] = {k: v for k, v in full.items() if k.startswith("text_model.")}
    return layouts


# part -> variant -> (pretrained-file prefix, official segmentor prefix)
_OFFICIAL_PREFIX = {
    "vfm": {v: ("", "backbone.dinov2.") for v in ("clip", "eva02", "siglip")},
    "vlm": {"clip": ("visual.", "backbone."), "eva02": ("visual.", "backbone."),
            "siglip": ("vision_model.", "backbone.")},
    "text": {"clip": ("", "text_encoder."), "eva02": ("text.", "text_encoder."),
             "siglip": ("text_model.", "text_encoder.")},
}


def official_state_dict(model, seed: int = 0):
    """(official segmentor state dict, {part: pretrained-file-layout state dict of the same frozen values}).

    On a meta-device model every tensor is a meta tensor (names and shapes only). Trainable parts and the pyramid's
    BatchNorm statistics take the model's own values; the frozen encoders get random values.
    """
    variant = model_variant(model)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    frozen_targets = ("backbone.vfm.", "backbone.vlm.", "text_encoder.tower.")
    official: Dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.startswith(frozen_targets):
            continue
        name = official_name(k)
        assert name is not None, f"no official name for {k}"
        official[name] = v.detach().clone()
    files: Dict[str, Dict[str, torch.Tensor]] = {}
    for part, layout in frozen_file_layouts(model).items():
        strip, prefix = _OFFICIAL_PREFIX[part][variant]
        files[part] = {}
        for k, (shape, dtype) in layout.items():
            t = _tensor(shape, torch.int64 if dtype == torch.int64 else torch.float32, device, gen)
            files[part][k] = t
            official[prefix + k[len(strip):]] = t
    width = model.backbone.vfm.embed_dim
    if variant == "eva02":  # built, never used
        official["random_text"] = _tensor((model.num_classes, model.text_encoder.out_dim), torch.float32, device, gen)
        ctx = model.text_encoder.tower.positional_embedding.shape[0]
        official["text_encoder.attn_mask"] = _tensor((ctx, ctx), torch.float32, device, gen)
    if variant == "siglip":  # built, never called; and non-persistent position ids saved by mmcv
        for proj in ("adapter_proj1", "adapter_proj2"):
            for i in range(model.backbone.vfm.num_blocks):
                official[f"backbone.{proj}.{i}.weight"] = _tensor((width, width), torch.float32, device, gen)
                official[f"backbone.{proj}.{i}.bias"] = _tensor((width,), torch.float32, device, gen)
        official["backbone.adapter_proj3.weight"] = _tensor((width, width), torch.float32, device, gen)
        official["backbone.adapter_proj3.bias"] = _tensor((width,), torch.float32, device, gen)
        grid = model.backbone.vlm.built_grid
        official["backbone.embeddings.position_ids"] = _tensor((1, grid[0] * grid[1]), torch.int64, device, gen)
        ctx = model.text_encoder.tower.positional_embedding.shape[0]
        official["text_encoder.embeddings.position_ids"] = _tensor((1, ctx), torch.int64, device, gen)
    return official, files


def official_checkpoint(model, seed: int = 0, iteration: int = 20000) -> dict:
    """A whole ``iter_*.pth`` payload: ``{'meta', 'state_dict', 'optimizer'}`` as mmcv writes it."""
    sd, _ = official_state_dict(model, seed)
    types = {"clip": "MFuser_CLIP", "eva02": "MFuser_EVA_CLIP", "siglip": "MFuser_SIGLIP"}
    # mmcv also stores numpy scalars in meta (e.g. hook_msgs.best_score with save_best)
    meta = {"mmseg_version": "0.20.2", "config": f"model = dict(\n    type='{types[model_variant(model)]}',\n)",
            "iter": iteration, "epoch": 1, "seed": 2023,
            "hook_msgs": {"last_ckpt": f"work_dirs/iter_{iteration}.pth", "best_score": np.float64(0.7124)}}
    return {"meta": meta, "state_dict": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}
