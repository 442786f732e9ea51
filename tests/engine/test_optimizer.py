"""Optimizer parameter groups: the official per-variant rules on official names, and this project's rule."""
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from mfuser.engine.optimizer import OFFICIAL_CUSTOM_KEYS, get_mfuser_optimizer_params
from tests.conftest import REPO_ROOT

LR, WD = 1e-4, 1e-5


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")).model)


def settings(model, **kwargs):
    """our parameter name -> (lr, weight decay)."""
    groups = get_mfuser_optimizer_params(model, base_lr=LR, weight_decay=WD, **kwargs)
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


# (our name, official name it stands for, decayed under the CLIP rule, decayed under the EVA02/SigLIP rule)
CASES = [
    ("text_encoder.contexts", "contexts", True, True),  # not caught by the official 'text_encoder' lr-0 rule
    ("text_enhancer.gamma", "gamma", True, True),
    ("head.pixel_decoder.level_embed", "decode_head.pixel_decoder.level_encoding.weight", True, True),
    ("head.transformer_decoder.level_embed.weight", "decode_head.level_embed.weight", True, False),
    ("head.transformer_decoder.query_embed.weight", "decode_head.query_embed.weight", True, False),
    ("head.transformer_decoder.query_feat.0.weight", "decode_head.text_proj.0.weight", True, True),
    ("head.pixel_decoder.input_proj.0.1.weight", "...input_convs.0.gn.weight (GroupNorm)", True, True),
    ("backbone.pyramid.up4.1.weight", "backbone.fpn1.1.weight (BatchNorm)", True, True),
    ("head.pixel_decoder.text_pos.weight", "decode_head.pixel_decoder.text_pos_embed.weight", True, True),
    ("backbone.fusers.0.norm.weight", "backbone.adapter.0.norm.weight", False, False),
    ("text_enhancer.decoder.0.norm1.weight", "context_decoder.decoder.0.norm1.weight", False, False),
    ("head.pixel_decoder.layers.0.norm2.bias", "...encoder.layers.0.norms.1.bias", False, False),
    ("head.pixel_decoder.encoder_norm.weight", "...encoder.post_norm.weight", False, False),
    ("head.transformer_decoder.decoder_norm.weight", "...transformer_decoder.post_norm.weight", False, False),
    ("backbone.fusers.0.in_proj.weight", "backbone.adapter.0.in_proj.weight", True, True),
]


@pytest.mark.parametrize("variant", ["clip", "eva02"])
def test_official_rules_select_the_official_parameters(tiny, variant):
    got = settings(tiny, custom_keys=OFFICIAL_CUSTOM_KEYS[variant])
    assert set(got) == {n for n, p in tiny.named_parameters() if p.requires_grad}
    assert {lr for lr, _ in got.values()} == {LR}  # nothing trainable is under the official text_encoder
    for ours, official, decay_clip, decay_eva in CASES:
        expected = WD if (decay_clip if variant == "clip" else decay_eva) else 0.0
        assert got[ours][1] == expected, (ours, official)


def test_this_projects_rule_differs_where_documented(tiny):
    got = settings(tiny)
    assert got["head.pixel_decoder.input_proj.0.1.weight"][1] == 0.0  # every normalisation module
    assert got["backbone.pyramid.up4.1.weight"][1] == 0.0
    assert got["head.pixel_decoder.level_embed"][1] == 0.0 and got["head.pixel_decoder.text_pos.weight"][1] == 0.0
    assert got["backbone.fusers.0.in_proj.weight"][1] == WD


def test_bad_custom_keys_are_refused(tiny):
    with pytest.raises(ValueError, match="decay"):
        get_mfuser_optimizer_params(tiny, base_lr=LR, weight_decay=WD, custom_keys={"norm": {"decay": 0.0}})


@pytest.mark.parametrize("name, variant", [("clip_vitl_gta", "clip"), ("clip_vitl_city", "clip"),
                                           ("eva02_vitl_gta", "eva02"), ("eva02_vitl_synthia", "eva02"),
                                           ("siglip_vitl_city", "siglip")])
def test_published_configs_use_the_official_rules(name, variant):
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", "mfuser", f"mfuser_{name}_512.py"))
    assert dict(cfg.optimizer.params.custom_keys) == OFFICIAL_CUSTOM_KEYS[variant]
    assert cfg.optimizer.weight_decay == (1e-4 if variant == "clip" else 1e-5)
