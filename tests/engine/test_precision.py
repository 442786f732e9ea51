"""The precision policy (mfuser/engine/precision.py) and where it applies: training, evaluation, the predictor, the
quickstart's --precision; what stays float32 under bf16 autocast (losses, class scores)."""
import importlib.util
import itertools
import json
import logging
import os
import warnings

import pytest
import torch

from mfuser.engine import precision as P
from mfuser.engine.precision import (
    Precision,
    PrecisionError,
    announce_precision,
    precision_from_config,
    resolve_precision,
)
from tests.conftest import REPO_ROOT
from tests.tools.toy_model import ToySemSeg, generate_toy_data

TOY_CONFIG = os.path.join(REPO_ROOT, "tests", "tools", "toy_config.py")


@pytest.fixture
def native(monkeypatch):
    """``native(True | False)``: pretend the CPU has (or lacks) native bf16; warnings and announcements start fresh."""
    monkeypatch.setattr(P, "_warned_forced", set())
    monkeypatch.setattr(P, "_announced", set())

    def set_native(flag: bool):
        what = "AVX512-BF16" if flag else "no AVX512-BF16 or AMX"
        monkeypatch.setattr(P, "cpu_bf16_support", lambda: (flag, what))

    return set_native


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return generate_toy_data(str(tmp_path_factory.mktemp("toy_data")))


@pytest.fixture
def toy_cfg(toy_data, monkeypatch, tmp_path):
    from detectron2.config import LazyConfig

    monkeypatch.setenv("MFUSER_TOY_DATA", toy_data)
    cfg = LazyConfig.load(TOY_CONFIG)
    cfg.train.output_dir = str(tmp_path / "run")
    return cfg


def _autocast_probe(model):
    """Record (autocast enabled on CPU, its dtype) at every forward of ``model``."""
    seen = []
    model.register_forward_pre_hook(
        lambda *_: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    return seen


# ------------------------------------------------------------------------------------------------ the policy
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(native):
    native(True)
    choice = resolve_precision("auto", "cpu")
    assert choice.name == "bf16" and choice.dtype is torch.bfloat16 and choice.native_bf16 is True
    assert "AVX512-BF16" in choice.reason and choice.describe().startswith("precision: bf16 autocast on cpu")
    native(False)
    choice = resolve_precision("auto", "cpu")
    assert choice.name == "fp32" and choice.dtype is None and "no native bf16" in choice.reason
    x = torch.randn(4, 4)
    with choice.autocast():
        assert not torch.is_autocast_enabled("cpu") and (x @ x).dtype == torch.float32


def test_forced_values_win(native):
    native(True)
    assert resolve_precision("fp32", "cpu").name == "fp32"
    assert resolve_precision("BF16", torch.device("cpu")).name == "bf16"


def test_forced_bf16_on_a_cpu_without_support_runs_and_says_so_once(native, caplog):
    native(False)
    with pytest.warns(RuntimeWarning, match="without native bf16 support"):
        choice = resolve_precision("bf16", "cpu")
    assert choice.name == "bf16" and "emulated" in choice.reason and choice.native_bf16 is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        assert resolve_precision("bf16", "cpu").name == "bf16"
    x = torch.randn(8, 8)
    with choice.autocast():
        assert (x @ x).dtype == torch.bfloat16  # it runs


def test_cuda_auto_follows_train_amp(native):
    assert resolve_precision("auto", "cuda").name == "fp32"  # resolving needs no GPU
    assert resolve_precision("auto", "cuda:1", amp={"enabled": True, "precision": "fp16"}).name == "fp16"
    assert resolve_precision("auto", "cuda", amp={"enabled": True, "precision": "bf16"}).name == "bf16"
    assert resolve_precision("auto", "cuda", amp={"enabled": False, "precision": "fp16"}).name == "fp32"
    assert resolve_precision("bf16", "cuda").name == "bf16"
    native(True)  # train.amp on a CPU: its bf16 is used there too (as before this policy)
    assert resolve_precision("auto", "cpu", amp={"enabled": True, "precision": "bf16"}).name == "bf16"


@pytest.mark.parametrize("requested, device, amp, pattern", [
    ("half", "cpu", None, r"train.precision must be one of \['auto', 'fp32', 'bf16'\], got 'half'"),
    ("fp32", "cpu", {"enabled": True, "precision": "bf16"}, "contradicts train.precision=fp32"),
    ("bf16", "cuda", {"enabled": True, "precision": "fp16"}, "train.amp.precision=fp16 contradicts"),
    ("auto", "cpu", {"enabled": True, "precision": "fp16"}, "fp16 needs CUDA"),
    ("auto", "cuda", {"enabled": True, "precision": "int8"}, "train.amp.precision must be bf16 or fp16"),
    ("auto", "meta", None, "device must be cpu or cuda"),
])
def test_bad_values_and_contradictions_are_named(requested, device, amp, pattern):
    with pytest.raises(PrecisionError, match=pattern):
        resolve_precision(requested, device, amp=amp)


def test_the_config_key_and_its_override(native, toy_cfg):
    from detectron2.config import LazyConfig

    from mfuser.engine.defaults import check_config

    native(True)
    assert toy_cfg.train.precision == "auto"  # configs/common/train.py
    assert precision_from_config(toy_cfg).name == "bf16"
    cfg = LazyConfig.apply_overrides(toy_cfg, ["train.precision=fp32"])
    assert precision_from_config(cfg).name == "fp32"
    cfg.train.amp.enabled = True  # contradicts fp32: refused before anything is built
    with pytest.raises(PrecisionError, match="contradicts"):
        check_config(cfg, eval_only=False)
    assert precision_from_config({"model": None}).name == "bf16"  # no train section: auto on the CPU


def test_the_choice_is_announced_once(native, caplog, capsys):
    choice = Precision(name="bf16", requested="auto", device_type="cpu", reason="because")
    with caplog.at_level(logging.INFO, logger="mfuser"):
        assert announce_precision(choice) is True
        assert announce_precision(choice) is False
    said = caplog.text + capsys.readouterr().out
    assert said.count("precision: bf16 autocast on cpu (because)") == 1
    assert choice.as_dict() == {"name": "bf16", "requested": "auto", "device": "cpu", "reason": "because"}


# ------------------------------------------------------------------------------------------------ where it applies
def test_training_under_bf16_keeps_float32_weights(native):
    from detectron2.utils.events import EventStorage

    from mfuser.engine.train_loop import MFuserAMPTrainer, MFuserTrainer, build_trainer

    torch.manual_seed(0)
    model = ToySemSeg(num_classes=3, hidden=8)
    seen = _autocast_probe(model)
    batch = [{"image": torch.randint(0, 256, (3, 12, 16), dtype=torch.uint8),
              "sem_seg": torch.randint(0, 3, (12, 16))} for _ in range(2)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    assert type(build_trainer(model, [batch], opt, precision="fp32")) is MFuserTrainer
    trainer = build_trainer(model, itertools.repeat(batch), opt, precision="bf16", device_type="cpu")
    assert isinstance(trainer, MFuserAMPTrainer) and trainer.precision == torch.bfloat16
    before = [p.detach().clone() for p in params]
    with EventStorage(0):
        trainer.iter = 0
        trainer.run_step()
    assert seen == [(True, torch.bfloat16)]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, params)), "the step changed no weight"


def test_evaluation_runs_under_the_policy_and_records_it(native, toy_cfg):
    from mfuser.engine.defaults import do_test

    native(True)
    for requested, expected in (("auto", (True, torch.bfloat16)), ("fp32", None)):
        toy_cfg.train.precision = requested
        model = ToySemSeg(num_classes=3, hidden=8).eval()
        seen = _autocast_probe(model)
        do_test(toy_cfg, model)
        with open(os.path.join(toy_cfg.train.output_dir, "results.json")) as f:
            results = json.load(f)
        assert results["precision"]["requested"] == requested
        assert results["precision"]["name"] == ("bf16" if expected else "fp32")
        assert results["average"]["domains"] == ["toy_target_a", "toy_target_b"]
        assert seen and [s[0] for s in seen] == [expected is not None] * len(seen)
        if expected is not None:
            assert all(s == expected for s in seen)


def test_predictor_follows_the_policy_and_returns_float32(native, toy_cfg):
    from mfuser.engine import MFuserPredictor

    native(True)
    image = torch.randint(0, 256, (24, 32, 3), dtype=torch.uint8).numpy()
    for override, name in ((None, "bf16"), ("fp32", "fp32")):
        predictor = MFuserPredictor(toy_cfg, precision=override)
        assert predictor.precision.name == name
        seen = _autocast_probe(predictor.model)
        out = predictor(image)
        assert out["sem_seg"].dtype == torch.float32 and out["sem_seg"].shape == (3, 24, 32)
        assert [s[0] for s in seen] == [name == "bf16"]


def test_quickstart_precision_option():
    spec = importlib.util.spec_from_file_location("quickstart_tool", os.path.join(REPO_ROOT, "tools", "quickstart.py"))
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    args = quickstart.parse_args(["--precision", "bf16", "train.max_iter=3"])
    opts = quickstart.train_overrides(args, "/tmp/out")
    assert opts.index("train.precision=bf16") < opts.index("train.max_iter=3")  # the user's overrides come last
    assert not any(o.startswith("train.precision") for o in quickstart.train_overrides(quickstart.parse_args([]), "o"))
    with pytest.raises(SystemExit) as e:
        quickstart.parse_args(["--precision", "fp8"])
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------------ float32 inside
@pytest.fixture(scope="module")
def tiny_mfuser():
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py"))
    torch.manual_seed(0)
    return instantiate(cfg.model).eval()


def test_class_scores_and_losses_are_float32_under_bf16_autocast(tiny_mfuser):
    from mfuser.modeling.heads import score_map_loss

    model = tiny_mfuser
    windows = torch.randint(0, 256, (1, 3, 32, 32)).float()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        text = model.class_embeddings()
        scores = model.predict_windows(windows, text)
        outputs, dense, enhanced = model.forward_features(windows, text)
    assert scores.dtype == torch.float32 and outputs["pred_masks"].dtype == torch.bfloat16
    sem_seg = torch.randint(0, model.num_classes, (1, 32, 32))
    sem_seg[:, :8] = 255
    kw = dict(scale=14.3, ignore_label=255)
    ref = score_map_loss(dense.float(), enhanced.float(), sem_seg, **kw)  # float32 on the same (bf16) values
    points = model.criterion.num_points
    model.criterion.num_points = 256  # fewer sampled points: a faster test, the same code
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = score_map_loss(dense, enhanced, sem_seg, **kw)
            losses = model.criterion(outputs, sem_seg)
    finally:
        model.criterion.num_points = points
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert all(v.dtype == torch.float32 for v in losses.values())


def test_sliding_window_batch_is_chosen_per_device(tiny_mfuser):
    from mfuser.modeling.meta_arch.mfuser import DEFAULT_WINDOW_BATCH, WINDOW_BATCH_BY_DEVICE

    model = tiny_mfuser
    saved = model.window_batch_size
    try:
        model.window_batch_size = None  # the default: per device, from measurement (docs/benchmarks.md)
        assert model.windows_per_forward(torch.device("cpu")) == WINDOW_BATCH_BY_DEVICE["cpu"] == 1
        assert model.windows_per_forward(torch.device("cuda")) == DEFAULT_WINDOW_BATCH == 6
        model.window_batch_size = 3  # set in a config: used on every device
        assert model.windows_per_forward(torch.device("cpu")) == 3
    finally:
        model.window_batch_size = saved


def test_cached_text_embeddings_follow_the_autocast_state(tiny_mfuser):
    """Embeddings cached under bf16 autocast are not handed to a float32 forward (and the reverse)."""
    model = tiny_mfuser
    model.eval()  # a fresh eval() clears the text cache
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.class_embeddings()
        fp32 = model.class_embeddings()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            again = model.class_embeddings()
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32 and again.dtype == torch.bfloat16
    torch.testing.assert_close(fp32, bf16.float(), rtol=5e-2, atol=5e-2)
