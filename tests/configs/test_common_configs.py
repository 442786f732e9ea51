"""The published-setting LazyConfigs: keys, pretrained paths, optimizer groups and the LR schedule."""
import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.solver import LRMultiplier

from tests.conftest import REPO_ROOT
from tests.tools.toy_model import ToySemSeg

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "mfuser", "*.py")))
EXPECTED = {f"mfuser_{v}_vitl_{s}_512.py" for v in ("clip", "eva02", "siglip") for s in ("gta", "city")}
EXPECTED.add("mfuser_eva02_vitl_synthia_512.py")


def test_one_config_per_published_checkpoint():
    assert {os.path.basename(p) for p in CONFIGS} == EXPECTED


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_published_config(path):
    from detectron2.data import DatasetCatalog

    import mfuser.data  # noqa: F401  (registers the datasets)

    cfg = LazyConfig.load(path)
    name = os.path.basename(path)
    for key in ["model", "optimizer", "lr_multiplier", "train", "dataloader"]:
        assert key in cfg, f"{name}: {key} missing"
    assert cfg.model.backbone.vfm.weights == "pretrained/dinov2_vitl14_pretrain.pth"
    vlm_file = {"clip": "ViT-L-14-336px.pt", "eva02": "EVA02_CLIP_L_336_psz14_s6B.pt",
                "siglip": "siglip_vitl16_384.pth"}
    vlm = name.split("_")[1]
    assert cfg.model.backbone.vlm.weights == cfg.model.text_encoder.weights == f"pretrained/{vlm_file[vlm]}"
    assert cfg.optimizer.lr == 1e-4
    assert cfg.optimizer.weight_decay == (1e-4 if vlm == "clip" else 1e-5)
    assert cfg.train.max_iter == 20000 and cfg.train.seed == 2023
    assert cfg.dataloader.train.total_batch_size == 2
    source = {"gta": "gta5_train", "city": "cityscapes_train", "synthia": "synthia_train"}[name.split("_")[3]]
    assert cfg.dataloader.train.names == source
    targets = list(cfg.dataloader.targets)
    assert targets == (["bdd100k_val", "mapillary_val"] if source == "cityscapes_train"
                       else ["cityscapes_val", "bdd100k_val", "mapillary_val"])
    registered = DatasetCatalog.list()
    assert source in registered and all(t in registered for t in targets)
    assert tuple(cfg.dataloader.test_resize["bdd100k_val"]) == (1280, 720)
    assert tuple(cfg.dataloader.test_resize["cityscapes_val"]) == (2048, 1024)
    assert cfg.dataloader.train.seed == 2023  # interpolated from train.seed


def test_optimizer_groups_and_schedule():
    common = os.path.join(REPO_ROOT, "configs", "common")
    cfg = LazyConfig.load(os.path.join(common, "optim.py"))
    cfg.optimizer = cfg.AdamW
    cfg.lr_multiplier = LazyConfig.load(os.path.join(common, "schedule.py")).lr_multiplier
    cfg.train = LazyConfig.load(os.path.join(common, "train.py")).train
    model = ToySemSeg()
    cfg.optimizer.params.model = model
    opt = instantiate(cfg.optimizer)
    assert isinstance(opt, torch.optim.AdamW)
    ids = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert id(model.stem.weight) not in ids  # frozen: not in the optimizer
    assert ids[id(model.level_embed)] == 0.0 and ids[id(model.norm.weight)] == 0.0
    assert ids[id(model.body.weight)] == cfg.optimizer.weight_decay

    sched = LRMultiplier(opt, instantiate(cfg.lr_multiplier), max_iter=20000)
    lrs = []
    for _ in range(20000):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(1e-4 * 1e-6, rel=1e-3)
    assert lrs[1500] == pytest.approx(max(lrs), rel=1e-6) and max(lrs) < 1e-4
    assert lrs[750] == pytest.approx(lrs[1500] / 2, rel=0.01)  # linear warm-up
    assert lrs[-1] == pytest.approx(1e-6, rel=0.05)  # poly 0.9 down to min_lr 1e-6
    assert all(a >= b for a, b in zip(lrs[1500:], lrs[1501:]))
