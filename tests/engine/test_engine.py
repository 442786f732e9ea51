"""mfuser.engine: atomic/strict checkpoints, resumable sampler, NaN guard, optimizer groups, schedule."""
import os

import pytest
import torch
from detectron2.data.samplers import TrainingSampler

from mfuser.data.samplers import ResumableSampler
from mfuser.engine import (
    CheckpointMismatchError,
    MFuserCheckpointer,
    NonFiniteLossError,
    build_warmup_poly_multiplier,
    check_losses_finite,
    get_mfuser_optimizer_params,
)
from tests.tools.toy_model import ToySemSeg


def test_atomic_save_keeps_previous_checkpoint_on_failure(tmp_path, monkeypatch):
    ckpt = MFuserCheckpointer(ToySemSeg(), str(tmp_path))
    ckpt.save("model_0000001")
    assert ckpt.get_checkpoint_file().endswith("model_0000001.pth")

    def boom(*a, **k):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000002")
    assert ckpt.get_checkpoint_file().endswith("model_0000001.pth")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]


def test_strict_load_names_keys_and_allows_declared_optional_prefixes(tmp_path):
    model = ToySemSeg()
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("stem.")}
    torch.save({"model": sd}, tmp_path / "no_stem.pth")
    MFuserCheckpointer(ToySemSeg()).load(str(tmp_path / "no_stem.pth"))  # stem declared optional: fine
    with pytest.raises(CheckpointMismatchError, match="missing keys.*stem.weight"):
        MFuserCheckpointer(ToySemSeg(optional_frozen=False)).load(str(tmp_path / "no_stem.pth"))
    torch.save({"model": {**model.state_dict(), "extra.weight": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointMismatchError, match="unexpected keys.*extra.weight"):
        MFuserCheckpointer(ToySemSeg()).load(str(tmp_path / "extra.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MFuserCheckpointer(ToySemSeg()).load(str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumable_sampler_continues_the_batch_stream(num_workers):
    from detectron2.data import build_detection_train_loader

    dataset = [{"i": i} for i in range(10)]

    def loader(skip):
        sampler = ResumableSampler(TrainingSampler(len(dataset), seed=7), skip=skip)
        dl = build_detection_train_loader(dataset, mapper=lambda d: d["i"], sampler=sampler, total_batch_size=2,
                                          aspect_ratio_grouping=False, num_workers=num_workers)
        it = iter(dl)
        return [next(it) for _ in range(4)]

    full = loader(0) + []
    resumed = loader(2 * 2)  # resume at iteration 2 with 2 images per batch
    assert resumed[:2] == full[2:4]
    assert loader(0) == full  # deterministic given the seed


def test_nan_guard_names_iteration_and_terms():
    check_losses_finite({"a": torch.tensor(1.0)}, 3)
    with pytest.raises(NonFiniteLossError, match=r"iteration 7.*loss_mask=nan"):
        check_losses_finite({"loss_ce": torch.tensor(1.0), "loss_mask": torch.tensor(float("nan"))}, 7)
    with pytest.raises(NonFiniteLossError, match="loss_ce=inf"):
        check_losses_finite({"loss_ce": torch.tensor(float("inf"))}, 0)


def test_optimizer_groups():
    model = ToySemSeg()
    groups = get_mfuser_optimizer_params(model, base_lr=1e-4, weight_decay=1e-5)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 1e-5 and groups[1]["weight_decay"] == 0.0
    assert id(model.body.weight) in decay and id(model.predictor.bias) in decay
    assert {id(model.level_embed), id(model.norm.weight), id(model.norm.bias)} <= no_decay
    assert id(model.stem.weight) not in decay | no_decay


def test_schedule_values():
    m = build_warmup_poly_multiplier(max_iter=1000, warmup_iters=100, base_lr=1e-4, min_lr=1e-6)
    assert m(0.0) == pytest.approx(1e-6)  # warm-up starts at 1e-6 x lr
    assert m(0.1) == pytest.approx(0.99 * 0.9**0.9 + 0.01)  # and joins the poly curve at its end
    assert m(1.0) == pytest.approx(0.01)
    assert m(0.5) == pytest.approx(0.99 * 0.5**0.9 + 0.01)
    with pytest.raises(ValueError, match="warmup_iters"):
        build_warmup_poly_multiplier(max_iter=10, warmup_iters=-1)
    short = build_warmup_poly_multiplier(max_iter=10, warmup_iters=1500)  # a smoke run: warm up over half of it
    assert short(0.0) == pytest.approx(1e-6) and short(0.5) > short(0.25) > short(0.0)



def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from mfuser.engine.checkpoint import RNGState

    torch.save({"rng": RNGState().state_dict()}, tmp_path / "c.pth")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    RNGState().load_state_dict(torch.load(tmp_path / "c.pth", weights_only=True)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
