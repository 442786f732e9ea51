"""tools/benchmark.py: each subcommand on the tiny MFuser config emits one JSON object with the documented keys."""
import json
import os

import pytest
import torch

from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
COMMON_KEYS = {"subcommand", "config", "device", "threads", "clock", "precision", "reference_precision", "warmup",
               "repeats", "overrides", "loadavg", "targets", "notes"}
MODEL_RUN_KEYS = {"time_encoders_s", "time_full_s", "full_over_encoders", "breakdown_s", "breakdown_total_s",
                  "added_share"}
MODEL_KEYS = MODEL_RUN_KEYS | {"size", "grid", "flops_encoders", "flops_full", "flops_ratio", "time_over_flops",
                               "flops_breakdown", "flops_uncounted_ops", "text_tower_calls", "text_tower_images",
                               "text_cached", "by_precision"}
SLIDE_RUN_KEYS = {"time_single_s", "time_batched_s", "speedup", "peak_mem_single_mb", "peak_mem_batched_mb",
                  "mem_ratio", "max_abs_diff"}
SLIDE_KEYS = SLIDE_RUN_KEYS | {"size", "crop_size", "stride", "num_windows", "window_batch", "memory_method",
                               "faster_window_batch", "by_precision"}
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
    r = _run(bench, capsys, "model", "--size", "96", "--precision", "fp32")
    assert set(r) == COMMON_KEYS | MODEL_KEYS
    assert r["precision"] == "fp32" and r["reference_precision"] is None and list(r["by_precision"]) == ["fp32"]
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
    r = _run(bench, capsys, "slide", "--size", "150x300", "--window-batch", "4", "model.stride=[85,85]",
             "--amp", "off")
    assert set(r) == COMMON_KEYS | SLIDE_KEYS
    assert r["faster_window_batch"] in (1, 4)
    assert r["num_windows"] == 2 * 4 and r["window_batch"] == 4 and r["overrides"] == ["model.stride=[85,85]"]
    assert r["max_abs_diff"] < 1e-4  # batched windows give the window-by-window result
    assert r["speedup"] == pytest.approx(r["time_single_s"] / r["time_batched_s"])
    assert r["peak_mem_single_mb"] >= 0 and r["peak_mem_batched_mb"] >= 0
    assert r["memory_method"] == "cpu_rss_sampling_1ms"
    assert set(r["targets"]) == {"batched_faster"}


def test_train_step_json_keys(bench, capsys):
    r = _run(bench, capsys, "train-step", "--batch", "2", "--crop", "64")
    assert set(r) == COMMON_KEYS | TRAIN_KEYS
    assert r["reference_precision"] is None  # one precision only (the policy's on this machine)
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


def test_bf16_is_measured_beside_fp32_in_one_run(bench, capsys):
    """--amp bf16 on a CPU: model and slide report fp32 and bf16 side by side, with their ratios."""
    r = _run(bench, capsys, "model", "--size", "64", "--amp", "bf16", "--no-flops")
    assert r["precision"] == "bf16" and r["reference_precision"] == "fp32"
    assert set(r["by_precision"]) == {"bf16", "fp32"}
    assert all(set(v) == MODEL_RUN_KEYS for v in r["by_precision"].values())
    assert r["time_full_s"] == r["by_precision"]["bf16"]["time_full_s"]  # top level: the chosen precision
    ratios = r["over_fp32"]
    assert ratios["time_full_s"] == pytest.approx(r["time_full_s"] / r["by_precision"]["fp32"]["time_full_s"])
    assert set(ratios["breakdown_s"]) == BREAKDOWN
    assert {"full_bf16_over_fp32<=0.45", "added_share_bf16<=fp32"} <= set(r["targets"])
    s = _run(bench, capsys, "slide", "--size", "128x200", "--window-batch", "2", "--precision", "bf16",
             "model.stride=[85,85]")
    assert set(s["by_precision"]) == {"bf16", "fp32"} and set(s["over_fp32"]) == {"time_single_s", "time_batched_s"}
    agreement = s["by_precision"]["fp32"]["agreement"]
    assert 0.9 <= agreement["pixels_same_label"] <= 1.0 and agreement["max_abs_score_diff"] < 0.1
    only = _run(bench, capsys, "model", "--size", "64", "--amp", "bf16", "--no-flops", "--no-reference")
    assert list(only["by_precision"]) == ["bf16"] and "over_fp32" not in only


def test_side_by_side_table(bench, capsys):
    threads = torch.get_num_threads()
    try:
        assert bench.main(["model", "--config-file", TINY, "--size", "64", "--amp", "bf16", "--no-flops",
                           "--warmup", "0", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "by precision (same run)" in out and "bf16/fp32" in out
    row = next(line for line in out.splitlines() if line.startswith("time_full_s") and len(line.split()) == 4)
    _, bf16, fp32, ratio = row.split()
    assert float(ratio) == pytest.approx(float(bf16) / float(fp32), rel=2e-3)


def test_cpu_clock(bench, capsys):
    """--clock cpu times with the process's CPU time: a sleep costs (almost) none of it."""
    import time

    from mfuser.utils.benchmark import measure

    try:
        measure.set_clock("cpu")
        elapsed, _ = measure.time_call(lambda: time.sleep(0.2), torch.device("cpu"))
    finally:
        measure.set_clock("wall")
    assert elapsed < 0.05
    r = _run(bench, capsys, "model", "--size", "64", "--precision", "fp32", "--no-flops", "--clock", "cpu")
    assert r["clock"] == "cpu" and r["time_full_s"] > 0
    assert bench.main(["model", "--config-file", TINY, "--clock", "cpu", "--device", "cuda"]) == 2


def test_auto_follows_the_cpu_rule(bench, monkeypatch):
    from mfuser.utils.benchmark import cli

    cpu = torch.device("cpu")
    monkeypatch.setattr(cli, "cpu_bf16_support", lambda: (True, "AVX512-BF16"))
    assert cli.resolve_precision("auto", {}, cpu) == "bf16"
    monkeypatch.setattr(cli, "cpu_bf16_support", lambda: (False, "no AVX512-BF16 or AMX"))
    assert cli.resolve_precision("auto", {}, cpu) == "fp32"
    assert cli.resolve_precision("off", {}, cpu) == cli.resolve_precision("fp32", {}, cpu) == "fp32"
    assert cli.resolve_precision("bf16", {}, cpu) == "bf16"


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
    assert bench.main(["model", "--config-file", TINY, "--precision", "fp16"]) == 2
    assert "fp16 needs --device cuda" in capsys.readouterr().err


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
