"""Official MFuser checkpoints: layout, conversion, strict loading, the official parameter counts, bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from mfuser.engine.checkpoint import MFuserCheckpointer
from mfuser.engine.official_checkpoint import (
    OFFICIAL_RENAMES,
    convert_official_checkpoint,
    detect_variant,
    official_name,
    read_official_checkpoint,
)
from mfuser.modeling.encoders.checkpoints import CheckpointError, CheckpointMismatchError
from tests.conftest import REPO_ROOT
from tests.engine.official_fixtures import official_checkpoint, official_state_dict
from tests.modeling.meta_arch.tiny_families import family_cfg

VARIANTS = ("clip", "eva02", "siglip")
MANIFEST = {"clip": "clip", "eva02": "eva", "siglip": "siglip"}
# The official used trainable counts (docs/reference.md, "Trainable totals"): the unused random_text /
# adapter_proj* excluded.
OFFICIAL_USED_TRAINABLE = {"clip": 170_059_629, "eva02": 118_631_533, "siglip": 118_959_725}
UNUSED = {"clip": (), "eva02": ("random_text",), "siglip": ("backbone.adapter_proj",)}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}
TOOL = os.path.join(REPO_ROOT, "tools", "convert_mfuser_checkpoint.py")


class UnsafeObject:
    """An arbitrary Python object in a checkpoint: a weights-only load must refuse it."""


def manifest(shared_dir, variant):
    with open(os.path.join(shared_dir, "reference", "manifests", f"mfuser_official_{MANIFEST[variant]}.json")) as f:
        return json.load(f)


def manifest_checkpoint_keys(man):
    """Every key of a saved official checkpoint, in order (state_dict() keys + mmcv's extra buffers)."""
    entries = list(man["keys"])
    for extra in man["checkpoint_extra_keys"]:
        entries.insert(extra["checkpoint_index"], extra)
    assert len(entries) == man["checkpoint_num_keys"]
    return entries


def meta_model(variant):
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", "common", "models", f"mfuser_{variant}.py"))
    if variant == "siglip":
        cfg.model.text_encoder.tokenizer_path = None
    with torch.device("meta"):
        return instantiate(cfg.model)


@pytest.fixture(scope="module", params=VARIANTS)
def full_size(request):
    return request.param, meta_model(request.param)


# ------------------------------------------------------------------------------------------ full size, meta device
def test_test_fixture_writes_exactly_the_official_layout(full_size, shared_dir):
    """The tests' checkpoint writer (used at tiny size below) reproduces every official key and shape."""
    variant, model = full_size
    expected = {e["key"]: tuple(e["shape"]) for e in manifest_checkpoint_keys(manifest(shared_dir, variant))}
    sd, _ = official_state_dict(model)
    written = {k: tuple(v.shape) for k, v in sd.items()}
    assert sorted(set(written) ^ set(expected)) == []
    assert {k: s for k, s in written.items() if expected[k] != s} == {}


def test_every_official_key_maps_and_shapes_agree(full_size, shared_dir):
    variant, model = full_size
    entries = manifest_checkpoint_keys(manifest(shared_dir, variant))
    sd = {e["key"]: torch.empty(e["shape"], dtype=DTYPES[e["dtype"]], device="meta") for e in entries}
    state, report = convert_official_checkpoint({"meta": {}, "state_dict": sd, "optimizer": {}}, model,
                                                source=f"official_{variant}.pth")
    own = model.state_dict()
    assert list(state) == list(own)  # every model tensor, nothing else, in the model's order
    assert all(tuple(state[k].shape) == tuple(own[k].shape) for k in own)
    # every official key is accounted for: renamed, converted by an encoder, or dropped with a reason
    assert set(report.renamed) | set(report.frozen) | set(report.dropped) == set(sd)
    dropped = set(report.dropped)
    assert "backbone.dinov2.mask_token" in dropped
    if variant == "eva02":
        assert {"random_text", "text_encoder.attn_mask", "backbone.rope.freqs_cos"} <= dropped
        assert sum("rope.freqs_" in k for k in dropped) == 50
    if variant == "siglip":
        assert sum(k.startswith("backbone.adapter_proj") for k in dropped) == 2 * 2 * 24 + 2
        assert {"backbone.embeddings.position_ids", "text_encoder.embeddings.position_ids"} <= dropped
    # trainable in the official model <=> trainable here
    trainable = {e["key"] for e in entries if e.get("trainable")}
    ours_trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert {report.renamed[k] for k in trainable if k in report.renamed} == ours_trainable
    assert not any(k in report.frozen for k in trainable)


def test_trainable_counts_equal_the_official_used_counts(full_size, shared_dir):
    variant, model = full_size
    man = manifest(shared_dir, variant)
    ours = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ours == OFFICIAL_USED_TRAINABLE[variant]
    unused = sum(torch.Size(e["shape"]).numel() for e in man["keys"]
                 if e["trainable"] and e["key"].startswith(UNUSED[variant]))
    assert ours + unused == man["trainable_params"]


def test_renaming_table_round_trips():
    for official, ours in OFFICIAL_RENAMES:
        o, t = official.replace("{i}", "3"), ours.replace("{i}", "3")
        suffix = "weight" if official.endswith(".") else ""
        assert official_name(t + suffix) == o + suffix


# ------------------------------------------------------------------------------------------ tiny size, real files
def tiny_model(variant, tmp_path, seed):
    cfg = family_cfg(variant, tmp_path, tokenizer=False)
    torch.manual_seed(seed)
    return instantiate(cfg.model)


def load_frozen_from_files(model, files):
    """Load the frozen encoders through their own pretrained-file loaders (an independent path)."""
    model.backbone.vfm.load_official_state_dict(files["vfm"], strict=False)
    model.backbone.vlm.load_official_state_dict(files["vlm"], strict=False)
    model.text_encoder.load_official_state_dict(files["text"], strict=False)


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_official_file_converts_and_loads_strictly(variant, tmp_path):
    source = tiny_model(variant, tmp_path, seed=1)
    ckpt = official_checkpoint(source)
    _, files = official_state_dict(source)
    load_frozen_from_files(source, files)
    path = str(tmp_path / "iter_20000.pth")
    torch.save(ckpt, path)
    out = str(tmp_path / "converted.pth")

    model = tiny_model(variant, tmp_path, seed=2)
    converted, report = convert_official_checkpoint(read_official_checkpoint(path), model, source=path)
    torch.save({"model": converted}, out)
    MFuserCheckpointer(model).load(out)  # strict: raises on any missing / unexpected / mis-shaped key
    want, got = source.state_dict(), model.state_dict()
    assert list(want) == list(got)
    assert [k for k in want if not torch.equal(want[k], got[k])] == []
    assert report.variant == variant

    # the official file given directly as train.init_checkpoint: converted in memory, same result
    direct = tiny_model(variant, tmp_path, seed=3)
    MFuserCheckpointer(direct).load(path)
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in want.items())


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("official")
    model = tiny_model("clip", tmp, seed=0)
    path = str(tmp / "iter_20000.pth")
    torch.save(official_checkpoint(model), path)
    return tmp, path


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_tool_writes_a_checkpoint_and_a_report(clip_files):
    tmp, path = clip_files
    out = str(tmp / "mfuser_tiny.pth")
    tiny_cfg = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
    res = run_tool(path, out, "--config-file", tiny_cfg)
    assert res.returncode == 0, res.stderr
    assert "official MFuser (clip) checkpoint" in res.stdout and "unexplained: none" in res.stdout
    assert "'optimizer' entry" in res.stdout
    data = torch.load(out, weights_only=True)
    assert data["mfuser_official"]["variant"] == "clip" and data["mfuser_official"]["iter"] == 20000
    model = tiny_model("clip", tmp, seed=5)
    MFuserCheckpointer(model).load(out)

    # refuses to overwrite; --drop-frozen leaves the encoders out
    assert run_tool(path, out, "--config-file", tiny_cfg).returncode == 2  # usage error
    res = run_tool(path, out, "--config-file", tiny_cfg, "--drop-frozen", "--overwrite")
    assert res.returncode == 0, res.stderr
    kept = torch.load(out, weights_only=True)["model"]
    assert not any(k.startswith(("backbone.vfm.", "backbone.vlm.", "text_encoder.tower.")) for k in kept)
    assert "text_encoder.contexts" in kept and "left out" in res.stdout


def test_tool_refuses_another_variant_and_writes_nothing(clip_files):
    tmp, path = clip_files
    out = str(tmp / "wrong.pth")
    res = run_tool(path, out, "--variant", "eva02")
    assert res.returncode == 1
    assert "clip" in res.stderr and "eva02" in res.stderr and path in res.stderr
    assert not os.path.exists(out)


def test_truncated_and_foreign_files_are_refused(clip_files, tmp_path):
    _, path = clip_files
    truncated = str(tmp_path / "truncated.pth")
    with open(path, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_official_checkpoint(truncated)
    res = run_tool(truncated, str(tmp_path / "out.pth"))
    assert res.returncode == 1 and res.stderr.startswith("error: ") and truncated in res.stderr
    assert not os.path.exists(tmp_path / "out.pth")

    unsafe = str(tmp_path / "unsafe.pth")
    torch.save({"state_dict": {"decode_head.x": torch.zeros(1)}, "meta": {"hook": UnsafeObject()}}, unsafe)
    with pytest.raises(CheckpointError, match=r"weights-only\) load refuses.*UnsafeObject"):
        read_official_checkpoint(unsafe)

    foreign = str(tmp_path / "d2.pth")
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointMismatchError, match="not an official MFuser checkpoint"):
        read_official_checkpoint(foreign)


def test_bad_keys_and_shapes_are_named(clip_files, tmp_path):
    _, path = clip_files
    ckpt = read_official_checkpoint(path)
    model = tiny_model("clip", tmp_path, seed=0)

    bad = {**ckpt, "state_dict": dict(ckpt["state_dict"])}
    bad["state_dict"]["decode_head.cls_embed.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatchError, match=r"decode_head\.cls_embed\.weight.*class_embed"):
        convert_official_checkpoint(bad, model, source="bad.pth")

    extra = {**ckpt, "state_dict": {**ckpt["state_dict"], "decode_head.mystery": torch.zeros(1)}}
    with pytest.raises(CheckpointMismatchError, match="mystery"):
        convert_official_checkpoint(extra, model, source="extra.pth")

    missing = {**ckpt, "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k != "gamma"}}
    with pytest.raises(CheckpointMismatchError, match="text_enhancer.gamma"):
        convert_official_checkpoint(missing, model, source="missing.pth")

    meta_says_eva = {**ckpt, "meta": {"config": "model = dict(type='MFuser_EVA_CLIP')"}}
    with pytest.raises(CheckpointMismatchError, match="meta.config"):
        detect_variant(meta_says_eva["state_dict"], meta_says_eva["meta"], "x.pth")


# ------------------------------------------------------------------------------------------ the train/eval tool
TRAIN_NET = os.path.join(REPO_ROOT, "tools", "lazyconfig_train_net.py")
QUICKSTART = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from mfuser.data.synthetic import generate_all

    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_all(root, num_source=2, num_target=1, size=(256, 128))
    return root


def eval_only(root, init, out):
    return subprocess.run(
        [sys.executable, TRAIN_NET, "--eval-only", "--config-file", QUICKSTART, f"train.init_checkpoint={init}",
         f"train.output_dir={out}", "dataloader.targets=[synthetic_cityscapes_val]"],
        capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "MFUSER_SYNTHETIC_ROOT": root, "PYTHONWARNINGS": "ignore"})


def test_eval_only_takes_an_official_file_and_refuses_another_variant(clip_files, synthetic_root, tmp_path):
    _, path = clip_files
    res = eval_only(synthetic_root, path, str(tmp_path / "ok"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "official MFuser (clip) checkpoint converted in memory" in res.stdout + res.stderr
    assert os.path.isfile(tmp_path / "ok" / "eval" / "iter_20000" / "results.json")

    eva = str(tmp_path / "iter_eva.pth")
    torch.save(official_checkpoint(tiny_model("eva02", tmp_path, seed=0)), eva)
    res = eval_only(synthetic_root, eva, str(tmp_path / "bad"))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()
    assert any(line.startswith("error: ") and eva in line and "eva02" in line and "clip" in line for line in last)
