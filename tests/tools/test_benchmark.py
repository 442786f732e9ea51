"""tools/benchmark.py: each subcommand on the tiny MFuser config emits one JSON object with the documented keys."""
import json
import os

import pytest
import torch

from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
COMMON_KEYS = {"subcommand", "config", "device", "threads", "precision", "warmup", "repeats", "overrides", "loadavg",
               "targets", "notes"}
MODEL_KEYS = {"size", "grid", "time_encoders_s", "time_full_s", "full_over_encoders", "breakdown_s",
              "breakdown_total_s", "flops_encoders", "flops_full", "flops_ratio", "time_over_flops", "flops_breakdown",
              "flops_uncounted_ops", "text_tower_calls", "text_tower_images", "text_cached"}
SLIDE_KEYS = {"size", "crop_size", "stride", "num_windows", "window_batch", "time_single_s", "time_batched_s",
              "speedup", "peak_mem_single_mb", "peak_mem_batched_mb", "mem_ratio", "memory_method", "max_abs_diff"}
TRAIN_KEYS = {"batch", "crop", "trainable_params", "time_plain_s", "time_ckpt_s", "time_ratio", "peak_mem_plain_mb",
              "peak_mem_ckpt_mb", "mem_ratio", "memory_method", "loss_plain", "loss_ckpt"}
BREAKDOWN = {"encoders", "fusers", "pyramid", "mtenhancer", "pixel_decoder", "transformer_decoder", "text_encoder",
             "other"}


@pytest.fixture(scope="module")
def bench():
    """What tools/benchmark.py runs."""
    from mfuser.utils import benchmark

    return benchmark


def _run(bench, capsys, *argv):
    threads = torch.get_num_threads()
    try:
        code = bench.main([*argv, "--config-file", TINY, "--json", "--warmup", "0", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_model_json_keys_and_consistency(bench, capsys):
    r = _run(bench, capsys, "model", "--size", "96")
    assert set(r) == COMMON_KEYS | MODEL_KEYS
    assert r["subcommand"] == "model" and r["size"] == [96, 96] and r["grid"] == [12, 12]
    assert set(r["breakdown_s"]) == BREAKDOWN and set(r["flops_breakdown"]) == BREAKDOWN
    assert r["full_over_encoders"] == pytest.approx(r["time_full_s"] / r["time_encoders_s"])
    assert r["time_over_flops"] == pytest.approx(r["full_over_encoders"] / r["flops_ratio"])
    # The full model contains the encoders: more FLOPs, and the encoders' share is counted under "encoders"
    # (attention included via the added sdpa handle: equal to the encoders-alone count).
    assert r["flops_full"] > r["flops_encoders"] > 0
    assert r["flops_breakdown"]["encoders"] == pytest.approx(r["flops_encoders"], rel=0.01)
    assert all(r["flops_breakdown"][k] > 0 for k in ("fusers", "pyramid", "mtenhancer", "pixel_decoder",
                                                     "transformer_decoder"))
    assert all(r["breakdown_s"][k] > 0 for k in BREAKDOWN - {"text_encoder", "other"})
    assert sum(r["breakdown_s"].values()) == pytest.approx(r["breakdown_total_s"], rel=1e-6)
    # The selective scan is not counted by fvcore and must be named, not silently dropped.
    assert any("Scan" in op or "scan" in op for op in r["flops_uncounted_ops"])
    assert r["text_tower_images"] == 3 and r["text_tower_calls"] == 1 and r["text_cached"] is True
    assert r["targets"]["text_tower_once"] is True


def test_slide_json_keys_and_equal_outputs(bench, capsys):
    r = _run(bench, capsys, "slide", "--size", "150x300", "--window-batch", "4", "model.stride=[85,85]")
    assert set(r) == COMMON_KEYS | SLIDE_KEYS
    assert r["num_windows"] == 2 * 4 and r["window_batch"] == 4 and r["overrides"] == ["model.stride=[85,85]"]
    assert r["max_abs_diff"] < 1e-4  # batched windows give the window-by-window result
    assert r["speedup"] == pytest.approx(r["time_single_s"] / r["time_batched_s"])
    assert r["peak_mem_single_mb"] >= 0 and r["peak_mem_batched_mb"] >= 0
    assert r["memory_method"] == "cpu_rss_sampling_1ms"
    assert set(r["targets"]) == {"batched_faster"}


def test_train_step_json_keys(bench, capsys):
    r = _run(bench, capsys, "train-step", "--batch", "2", "--crop", "64")
    assert set(r) == COMMON_KEYS | TRAIN_KEYS
    assert r["batch"] == 2 and r["crop"] == [64, 64] and r["trainable_params"] > 0
    assert r["time_ratio"] == pytest.approx(r["time_ckpt_s"] / r["time_plain_s"])
    assert all(map(torch.isfinite, torch.tensor([r["loss_plain"], r["loss_ckpt"]])))
    assert set(r["targets"]) == {"mem_ratio>=2.0"}
    if r["peak_mem_ckpt_mb"] >= 10:  # MB values are rounded to 0.1
        assert r["mem_ratio"] == pytest.approx(r["peak_mem_plain_mb"] / r["peak_mem_ckpt_mb"], rel=0.02)
    one = _run(bench, capsys, "train-step", "--batch", "1", "--crop", "64", "--only", "ckpt")
    assert set(one) == COMMON_KEYS | TRAIN_KEYS
    assert one["time_plain_s"] is None and one["peak_mem_plain_mb"] is None and one["mem_ratio"] is None
    assert one["time_ckpt_s"] > 0 and one["targets"] == {}


def test_bad_input_is_named(bench, capsys, tmp_path):
    assert bench.main(["model", "--config-file", str(tmp_path / "nope.py")]) == 2
    assert "nope.py" in capsys.readouterr().err
    assert bench.main(["model", "--config-file", TINY, "not_an_override"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert bench.main(["model", "--config-file", TINY, "model.no_such_key.x=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["slide", "--config-file", TINY, "--size", "12x"])
    assert bench.main(["model", "--config-file", TINY, "--device", "cuda:7"]) == 2 or torch.cuda.device_count() > 7


def test_peak_memory_sees_an_allocation():
    from mfuser.utils.benchmark.measure import PeakMemory

    with PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(64, 2**20 // 4)  # 64 MiB, touched
        del x
    assert mem.peak >= 48 * 2**20


def test_a_missing_siglip_tokenizer_is_replaced_and_said(capsys, tmp_path):
    """Every shipped model config runs on a fresh machine: no tokenizer file, stand-in ids, and a note says so."""
    from mfuser.utils import benchmark

    cfg = tmp_path / "tiny_siglip.py"
    cfg.write_text(
        "from detectron2.config import LazyCall as L\n"
        "from mfuser.modeling.encoders import DINOv2Encoder, SigLIPTextEncoder, SigLIPVisionEncoder\n"
        f"from detectron2.config import LazyConfig\nmodel = LazyConfig.load({TINY!r}).model\n"
        "SMALL = dict(embed_dim=64, depth=4, num_heads=2, img_size=128, patch_size=8)\n"
        "model.backbone.vfm = L(DINOv2Encoder)(init_values=1.0, **SMALL)\n"
        "model.backbone.vlm = L(SigLIPVisionEncoder)(**SMALL)\n"
        "model.backbone.fusion_projections = False\n"
        f"model.text_encoder = L(SigLIPTextEncoder)(tokenizer_path={str(tmp_path / 'spiece.model')!r}, width=64, "
        "layers=2, heads=2, output_dim=64, vocab_size=40)\n"
    )
    threads = torch.get_num_threads()
    try:
        code = benchmark.main(["model", "--config-file", str(cfg), "--json", "--warmup", "0", "--repeats", "1",
                               "--size", "64", "--no-flops"])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert len(r["notes"]) == 1 and "spiece.model" in r["notes"][0] and r["time_full_s"] > 0
