"""Tiny text encoders with learnable contexts: forward, caching, loading, the SigLIP SentencePiece tokenizer."""
import pytest
import torch

from mfuser.modeling.encoders import (
    CheckpointMismatchError,
    CLIPTextEncoder,
    EVA02TextEncoder,
    SigLIPTextEncoder,
    SigLIPTokenizer,
)
from mfuser.modeling.encoders.checkpoints import read_state_dict
from mfuser.utils.testing import tiny_encoder_kwargs

NAMES = ["road", "sidewalk", "traffic light", "person", "motorcycle"]


def tiny(kind, spm_model=None, **over):
    kw = {**tiny_encoder_kwargs(kind, "text"), **over}
    if kind == "siglip":
        return SigLIPTextEncoder(tokenizer_path=spm_model, **kw)
    return {"clip": CLIPTextEncoder, "eva02": EVA02TextEncoder}[kind](**kw)


@pytest.mark.parametrize("kind,n_ctx,ctx_len", [("clip", 5, 10), ("eva02", 8, 13), ("siglip", 5, 10)])
def test_forward_shapes_and_trainable_contexts_only(kind, n_ctx, ctx_len, spm_model):
    enc = tiny(kind, spm_model).train()
    out = enc(NAMES)
    assert out.shape == (len(NAMES), enc.out_dim)
    assert enc.tower.positional_embedding.shape[0] == ctx_len and enc.n_ctx == n_ctx
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable == ["contexts"] and enc.contexts.shape == (1, n_ctx, enc.width)
    out.sum().backward()
    assert enc.contexts.grad is not None and enc.contexts.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["clip", "eva02", "siglip"])
def test_contexts_change_the_output(kind, spm_model):
    enc = tiny(kind, spm_model).eval()
    a = enc(NAMES).clone()
    with torch.no_grad():
        enc.contexts.add_(0.5)  # bumps the version counter: the eval cache must not serve the stale value
    b = enc(NAMES)
    assert not torch.allclose(a, b)


def test_eval_cache_per_vocabulary_and_invalidated_by_train():
    enc = tiny("clip").eval()
    a = enc(NAMES)
    assert enc(NAMES) is a
    other = enc(NAMES[:2])
    assert other.shape[0] == 2
    enc.train()
    c = enc(NAMES)
    assert c is not a and c.requires_grad
    torch.testing.assert_close(c.detach(), a)
    enc.eval()
    assert enc(NAMES) is not a


def test_clip_pooling_uses_the_shifted_eot():
    """Changing a padding position after the EOT must not change a causal-CLIP embedding."""
    enc = tiny("clip").eval()
    tokens = enc.tokenize(["road"])  # SOT road EOT 0 0
    assert tokens[0, 2] == tokens.max()
    out = enc.encode_tokens(tokens)
    t2 = tokens.clone()
    t2[0, 4] = 123
    torch.testing.assert_close(enc.encode_tokens(t2), out)


@pytest.mark.parametrize("kind", ["clip", "eva02", "siglip"])
def test_official_tiny_file_loads_text_keys(kind, tiny_files, spm_model):
    enc = tiny(kind, spm_model).eval()
    before = enc(NAMES).clone()
    rep = enc.load_official(tiny_files[kind])
    assert rep.ok and rep.missing == [] and rep.unexpected == []
    assert any("position" in a and "truncated" in a for a in rep.adapted)
    assert not any(k.startswith(("visual.", "vision_model.")) for k in rep.matched)
    after = enc(NAMES)
    assert not torch.allclose(before, after)
    sd, _ = read_state_dict(tiny_files[kind])
    src, dst = {"clip": lambda t: ("ln_final.weight", t.ln_final.weight),
                "eva02": lambda t: ("text.ln_final.weight", t.ln_final.weight),
                "siglip": lambda t: ("text_model.head.weight", t.text_projection.weight)}[kind](enc.tower)
    torch.testing.assert_close(dst, sd[src].float(), rtol=0, atol=0)
    assert [n for n, p in enc.named_parameters() if p.requires_grad] == ["contexts"]


def test_score_calibration(tiny_files, spm_model):
    scale, bias = tiny("clip", tau=0.05).score_calibration()
    assert bias is None and scale.item() == pytest.approx(20.0)
    enc = tiny("siglip", spm_model)
    enc.load_official(tiny_files["siglip"])
    sd, _ = read_state_dict(tiny_files["siglip"])
    scale, bias = enc.score_calibration()
    assert scale.item() == pytest.approx(sd["logit_scale"].exp().item(), rel=1e-6)
    assert bias.item() == pytest.approx(sd["logit_bias"].item())
    assert scale.dim() == 0 and bias.dim() == 0


def test_siglip_tokenizer(spm_model):
    tok = SigLIPTokenizer(spm_model, length=5)
    ids = tok(["Road", "road!", "traffic light", "a b c d e f g h"])
    assert ids.shape == (4, 5) and ids.dtype == torch.long
    assert torch.equal(ids[0], ids[1])  # canonicalised: lower-case, punctuation removed
    eos = tok.eos_id
    assert (ids[:, -1] == eos).all()  # EOS terminated / padded, long names truncated to 4 pieces + EOS
    assert (ids[3] != eos).sum() == 4


def test_siglip_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_spiece.model"):
        SigLIPTextEncoder(tokenizer_path=str(tmp_path / "missing_spiece.model"),
                          **tiny_encoder_kwargs("siglip", "text"))
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.model"):
        SigLIPTokenizer(str(bad))
    enc = SigLIPTextEncoder(tokenizer_path=None, **tiny_encoder_kwargs("siglip", "text"))
    with pytest.raises(RuntimeError, match="tokenizer_path"):
        enc(["road"])


def test_vocab_mismatch_is_reported(spm_model):
    enc = SigLIPTextEncoder(tokenizer_path=spm_model, **{**tiny_encoder_kwargs("siglip", "text"), "vocab_size": 8})
    with pytest.raises(ValueError, match="vocab size 8"):
        enc(["road", "sky"])


def test_bad_class_names_and_wrong_file(tiny_files):
    enc = tiny("clip")
    for bad in ([], "road", ["road", ""], [3]):
        with pytest.raises(ValueError, match="class_names"):
            enc(bad)
    with pytest.raises(CheckpointMismatchError, match="found 0 of"):
        enc.load_official(tiny_files["siglip"])
