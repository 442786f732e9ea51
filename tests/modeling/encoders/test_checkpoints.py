"""Official key layouts, safe readers and their errors."""
import json
import os

import pytest
import torch

from mfuser.modeling.encoders.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    check_source_keys,
    describe_state_dict,
    read_state_dict,
)
from mfuser.modeling.encoders.families import FAMILIES, KINDS
from mfuser.utils.testing import official_layout, random_state_dict, write_official_checkpoint

# The key manifest of each official file is named after it: <file stem>.json.
MANIFESTS = {k: os.path.splitext(f.file_name)[0] + ".json" for k, f in FAMILIES.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_full_layout_equals_manifest(kind, shared_dir):
    """Names, order, shapes and dtypes of the full-size layout equal the key manifest of the official file."""
    path = os.path.join(shared_dir, "reference", "manifests", MANIFESTS[kind])
    if not os.path.exists(path):
        pytest.skip(f"manifest not found: {path}")
    manifest = json.load(open(path))
    ours = [(k, list(s), str(d).replace("torch.", "")) for k, (s, d) in official_layout(kind).items()]
    theirs = [(k, v["shape"], v["dtype"]) for k, v in manifest["keys"].items()]
    assert ours == theirs
    n_params = sum(torch.Size(s).numel() for k, (s, d) in official_layout(kind).items()
                   if d != torch.int64 and "rope.freqs" not in k)
    assert n_params == manifest["total_params"]


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_file_round_trip(kind, tiny_files):
    sd, fmt = read_state_dict(tiny_files[kind])
    assert fmt == FAMILIES[kind].container == ("torchscript" if kind == "clip" else "torch.save")
    lay = official_layout(kind, "tiny")
    assert list(sd) == list(lay) if kind != "clip" else set(sd) == set(lay)
    for k, (shape, dtype) in lay.items():
        assert tuple(sd[k].shape) == tuple(shape), k
        assert sd[k].dtype == dtype, k


def test_tiny_layout_keeps_names_with_fewer_blocks():
    full, tiny = official_layout("eva02"), official_layout("eva02", "tiny")
    assert set(tiny) <= set(full)
    assert not any(".blocks.2." in k or ".resblocks.2." in k for k in tiny)


def test_eva_rope_aliases_share_storage():
    sd = random_state_dict("eva02", "tiny")
    ptrs = {sd[k].data_ptr() for k in sd if k.endswith("rope.freqs_cos")}
    assert len(ptrs) == 1


def test_wrapped_containers_are_unwrapped(tmp_path):
    sd = random_state_dict("dinov2", "tiny")
    for i, obj in enumerate([{"module": sd}, {"state_dict": {"module." + k: v for k, v in sd.items()}},
                             {"model": sd, "epoch": 3}]):
        p = tmp_path / f"w{i}.pth"
        torch.save(obj, p)
        got, _ = read_state_dict(str(p))
        assert list(got) == list(sd)


def test_missing_and_directory_and_truncated(tmp_path, tiny_files):
    with pytest.raises(CheckpointError, match="not found: .*nope.pth"):
        read_state_dict(str(tmp_path / "nope.pth"))
    with pytest.raises(CheckpointError, match="directory"):
        read_state_dict(str(tmp_path))
    for kind in ("dinov2", "clip"):
        data = open(tiny_files[kind], "rb").read()
        trunc = tmp_path / f"trunc_{kind}"
        trunc.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=str(trunc)):
            read_state_dict(str(trunc))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        read_state_dict(str(junk))


def test_arbitrary_pickles_are_refused(tmp_path):
    """weights_only loading: a pickle with a non-tensor object is an error, not code execution."""
    p = tmp_path / "obj.pth"
    torch.save({"w": torch.zeros(1), "obj": _Custom()}, p)
    with pytest.raises(CheckpointError, match="obj.pth"):
        read_state_dict(str(p))


class _Custom:
    pass


def test_mismatch_message_names_file_and_guess(tiny_files):
    sd, _ = read_state_dict(tiny_files["clip"])
    with pytest.raises(CheckpointMismatchError) as e:
        check_source_keys(sd, path="x.pt", model="DINOv2 ViT-L/14", used=list(official_layout("dinov2")))
    msg = str(e.value)
    assert "x.pt" in msg and "found 0 of 343" in msg and "OpenAI CLIP archive" in msg
    assert describe_state_dict(random_state_dict("siglip", "tiny")).endswith("SigLIP checkpoint")


def test_write_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        write_official_checkpoint("vit", str(tmp_path / "x"))
