"""Strict KEY=VALUE overrides (mfuser.engine.overrides)."""
import os

import pytest

from mfuser.engine.overrides import OverrideError, apply_overrides, load_config_file
from tests.conftest import REPO_ROOT

CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")


@pytest.fixture()
def cfg():
    return load_config_file(CONFIG)


def test_existing_keys_are_set_with_their_types(cfg):
    apply_overrides(cfg, ["train.max_iter=4", "optimizer.lr=1", "train.output_dir=2024", "dataloader.targets=[a]",
                          "train.init_checkpoint=null"])
    assert cfg.train.max_iter == 4 and cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.train.output_dir == "2024" and list(cfg.dataloader.targets) == ["a"]
    assert cfg.train.init_checkpoint is None


@pytest.mark.parametrize("line, message", [
    ("train.max_iters=4", "closest existing keys: train.max_iter"),
    ("trian.max_iter=4", "closest existing keys: train.max_iter"),
    ("train.max_iter=abc", "expected an integer"),
    ("train.max_iter=1.5", "expected an integer"),
    ("train.amp.enabled=1", "expected true or false"),
    ("dataloader.targets=abc", "expected a list"),
    ("model.backbone=3", "config group"),
    ("+train.max_iter=3", "already exists"),
    ("+nope.key=3", "nope is not in the config"),
    ("train.max_iter", "does not parse"),
])
def test_bad_overrides_are_refused_and_nothing_is_applied(cfg, line, message):
    with pytest.raises(OverrideError) as e:
        apply_overrides(cfg, ["train.log_period=7", line])
    assert message in str(e.value) and line in str(e.value)
    assert cfg.train.log_period != 7  # the valid override before it was not applied either


def test_new_keys_need_the_explicit_plus_form(cfg):
    apply_overrides(cfg, ["+train.my_flag=true", "++train.max_iter=9", "++train.other=1"])
    assert cfg.train.my_flag is True and cfg.train.max_iter == 9 and cfg.train.other == 1
    with pytest.raises(OverrideError, match="expected an integer"):
        apply_overrides(cfg, ["++train.max_iter=x"])  # ++ on an existing key keeps its type
