"""Every runnable LazyConfig (configs/mfuser, configs/quickstart, projects/*/configs) builds its model and its data.

Every config in configs/ must instantiate its model (with tiny overrides where needed to stay small) and its
data loaders against a generated tree.

* model: the published encoder families are kept (DINOv2 + CLIP / EVA02 / SigLIP, the config's patch sizes),
  only widths/depths shrink (the shape of configs/common/models/mfuser_tiny.py); the pretrained paths are
  checked, then set to None (no weights exist here); one eval forward on a small image.
* data: tiny trees in every prepared layout (tests/configs/tiny_trees.py; the quickstart's generated data from
  mfuser.data.synthetic) are registered under a temporary root; the source loader (rare-class sampling,
  with the statistics the preparation scripts write) yields one batch; every ``dataloader.targets`` name gets
  its test loader and evaluator built by tools/lazyconfig_train_net.py, yields one item at the configured
  test size, and the evaluator scores a prediction equal to the ground truth at 100 mIoU.
* the configs/common pieces are each reached by at least one of the configs tested here.
"""
import glob
import os
import re
import time

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from mfuser.data import CITYSCAPES_CLASSES, register_all, register_synthetic
from mfuser.modeling.encoders import (
    CLIPTextEncoder,
    CLIPVisionEncoder,
    DINOv2Encoder,
    EVA02TextEncoder,
    EVA02VisionEncoder,
    SigLIPTextEncoder,
    SigLIPVisionEncoder,
)
from tests.conftest import REPO_ROOT

from .tiny_trees import TARGET_SIZE, make_all_trees, train_spm_model

CONFIG_DIRS = ("configs/mfuser", "configs/quickstart", "projects/*/configs")
CONFIGS = sorted(
    os.path.relpath(p, REPO_ROOT) for d in CONFIG_DIRS for p in glob.glob(os.path.join(REPO_ROOT, d, "*.py"))
)
EXPECTED_CONFIGS = {
    "configs/quickstart/mfuser_tiny_synthetic.py",
    "projects/ACDC/configs/mfuser_eva02_vitl_city_acdc.py",
} | {f"configs/mfuser/mfuser_{v}_vitl_{s}_512.py" for v in ("clip", "eva02", "siglip") for s in ("gta", "city")} | {
    "configs/mfuser/mfuser_eva02_vitl_synthia_512.py"
}

# vision-language family -> (vision encoder, text encoder, pretrained file of both towers)
FAMILIES = {
    "clip": (CLIPVisionEncoder, CLIPTextEncoder, "ViT-L-14-336px.pt"),
    "eva02": (EVA02VisionEncoder, EVA02TextEncoder, "EVA02_CLIP_L_336_psz14_s6B.pt"),
    "siglip": (SigLIPVisionEncoder, SigLIPTextEncoder, "siglip_vitl16_384.pth"),
}
PRETRAINED_VFM = "pretrained/dinov2_vitl14_pretrain.pth"

# tiny shape (configs/common/models/mfuser_tiny.py): width 64, 4 blocks tapped at 0..3, 128-pixel windows
WIDTH, DEPTH, HEADS, TEXT_DIM, CROP = 64, 4, 2, 64, 128
TINY_VISION = {  # per family: the argument names of its constructor
    DINOv2Encoder: dict(embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS),
    CLIPVisionEncoder: dict(width=WIDTH, layers=DEPTH, heads=HEADS, output_dim=TEXT_DIM),
    EVA02VisionEncoder: dict(embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, output_dim=TEXT_DIM),
    SigLIPVisionEncoder: dict(embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS),  # output dim = embed_dim
}
TINY_TEXT = dict(width=WIDTH, layers=2, heads=HEADS, output_dim=TEXT_DIM)
LOADER_CROP = 64  # train crops larger than CROP are shrunk to this


def _family(path: str):
    """The VLM family a config is named after, or None (the quickstart)."""
    m = re.match(r"mfuser_(clip|eva02|siglip)_", os.path.basename(path))
    return m.group(1) if m else None


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Generated trees (shared by every config), and a function that points the registrations at them.

    Teardown puts every registration back on its default root, as importing the modules does.
    """
    from mfuser.data.synthetic import generate_all

    root = str(tmp_path_factory.mktemp("datasets"))
    t0 = time.perf_counter()
    make_all_trees(root)
    # 256x128: the generated source labels then hold classes above the sampler's min_pixels=3000
    synthetic = os.path.join(root, "synthetic")
    generate_all(synthetic, num_source=2, num_target=1, size=(256, 128))
    spm = train_spm_model(os.path.join(root, "spiece.model"))
    print(f"trees generated in {time.perf_counter() - t0:.2f} s")
    from projects.ACDC import acdc_datasets as acdc  # the project's module, imported from the checkout

    def point_registrations():
        register_all(root)
        acdc.register_all_acdc(os.path.join(root, "acdc"))
        register_synthetic(synthetic)

    yield dict(root=root, synthetic=synthetic, spm=spm, register=point_registrations)
    register_all()
    acdc.register_all_acdc()
    register_synthetic(os.path.join("datasets", "synthetic"))


@pytest.fixture(scope="module")
def tool():
    """The engine that tools/lazyconfig_train_net.py runs."""
    from mfuser.engine import defaults

    return defaults


def load_config(path, trees, monkeypatch):
    """LazyConfig.load with the quickstart's data root set; registrations then point at the generated trees
    (after loading: the ACDC and quickstart configs register their names on load)."""
    monkeypatch.setenv("MFUSER_SYNTHETIC_ROOT", trees["synthetic"])
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, path))
    trees["register"]()
    return cfg


def test_every_runnable_config_is_covered():
    assert set(CONFIGS) == EXPECTED_CONFIGS


def _imported_config_files(path, seen):
    """Config files reached from ``path`` through relative imports (``from ..common.data.x import ...``)."""
    if path in seen:
        return seen
    seen.add(path)
    with open(path) as f:
        text = f.read()
    for dots, mod in re.findall(r"^from (\.+)([\w.]*) import", text, flags=re.M):
        base = os.path.dirname(path)
        for _ in range(len(dots) - 1):
            base = os.path.dirname(base)
        target = os.path.join(base, *mod.split(".")) + ".py" if mod else None
        if target and os.path.isfile(target):
            _imported_config_files(target, seen)
    return seen


def test_every_common_piece_is_used_by_a_tested_config():
    reached = set()
    for path in CONFIGS:
        _imported_config_files(os.path.join(REPO_ROOT, path), reached)
    common = set(glob.glob(os.path.join(REPO_ROOT, "configs", "common", "**", "*.py"), recursive=True))
    unused = sorted(os.path.relpath(p, REPO_ROOT) for p in common - reached if not p.endswith("__init__.py"))
    assert not unused, f"configs/common files no tested config imports: {unused}"


# ---------------------------------------------------------------------------------------------- model
def shrink_model(model, spm_path):
    """Tiny overrides that keep the config's encoder families and patch sizes; weights off."""
    bb = model.backbone
    for enc in (bb.vfm, bb.vlm):
        assert enc._target_ in TINY_VISION, f"unexpected encoder {enc._target_}"
        enc.update(TINY_VISION[enc._target_], img_size=CROP, weights=None)
    bb.tap_indices = tuple(range(DEPTH))
    text = dict(TINY_TEXT, weights=None)
    if model.text_encoder._target_ is SigLIPTextEncoder:
        text.update(vocab_size=64, tokenizer_path=spm_path)  # the tokenizer file is a tiny one trained here
    model.text_encoder.update(text)
    model.text_enhancer.update(text_dim=TEXT_DIM, visual_dim=TEXT_DIM, width=32, num_heads=4)
    model.head.pixel_decoder.input_shape.channels = 2 * WIDTH
    model.head.pixel_decoder.update(
        text_dim=TEXT_DIM, conv_dim=64, mask_dim=64, num_layers=2, num_heads=4, num_points=4, ffn_dim=128
    )
    model.head.transformer_decoder.update(
        in_channels=64, text_dim=TEXT_DIM, hidden_dim=64, num_heads=4, dim_feedforward=128, dec_layers=3, mask_dim=64
    )
    model.criterion.num_points = 2048
    model.crop_size = (CROP, CROP)
    model.stride = (85, 85)


def check_published_model_config(path, model):
    """The config's encoder families and pretrained files (as published, under pretrained/)."""
    family = _family(path)
    vision, text, vlm_file = FAMILIES[family]
    assert model.backbone.vfm._target_ is DINOv2Encoder
    assert model.backbone.vlm._target_ is vision and model.text_encoder._target_ is text
    assert model.backbone.vfm.weights == PRETRAINED_VFM
    assert model.backbone.vlm.weights == f"pretrained/{vlm_file}"
    assert model.text_encoder.weights == f"pretrained/{vlm_file}"  # one file holds both towers
    expected_patch = 14 if family == "eva02" else 16  # (docs/reference.md, "Equal token grids")
    assert model.backbone.vfm.patch_size == model.backbone.vlm.get("patch_size", expected_patch) == expected_patch
    if family == "siglip":
        assert model.text_encoder.tokenizer_path == "pretrained/siglip_spiece.model"


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_its_model_and_runs_one_forward(path, trees, monkeypatch):
    cfg = load_config(path, trees, monkeypatch)
    model_cfg = cfg.model
    if _family(path) is None:  # the quickstart: already the tiny model, built from scratch
        assert model_cfg.backbone.vfm.weights is None and model_cfg.backbone.vlm.weights is None
        assert model_cfg.backbone.vfm.embed_dim == WIDTH and model_cfg.backbone.vfm.depth == DEPTH
    else:
        check_published_model_config(path, model_cfg)
        shrink_model(model_cfg, trees["spm"])
    torch.manual_seed(0)
    model = instantiate(model_cfg).eval()
    bb = model.backbone
    family = _family(path)
    vision, text = FAMILIES[family or "clip"][:2]  # the quickstart's tiny model is of the CLIP family
    assert isinstance(bb.vfm, DINOv2Encoder) and isinstance(bb.vlm, vision) and isinstance(model.text_encoder, text)
    assert bb.vfm.patch_size == bb.vlm.patch_size == (14 if family == "eva02" else 16 if family else 8)
    assert len(bb.fusers) == DEPTH and hasattr(bb, "proj_in") == (family in ("clip", None))
    names = list(model.class_names)
    assert len(names) == 19
    if _family(path) is not None:
        assert names == list(CITYSCAPES_CLASSES)
    params = sum(p.numel() for p in model.parameters())
    assert params < 10e6, f"{path}: the tiny override left {params / 1e6:.1f}M parameters"
    h, w = 96, 160  # smaller than one window in height, two windows wide
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 2 * h, "width": 2 * w}])
    sem_seg = out["sem_seg"]
    assert sem_seg.shape == (19, 2 * h, 2 * w)
    assert torch.isfinite(sem_seg).all()


# ---------------------------------------------------------------------------------------------- data
def _expected_test_size(h, w, resize):
    """mmseg keep-ratio resize (long, short): the size MFuserTestDatasetMapper produces."""
    if resize is None:
        return h, w
    long_side, short_side = max(resize), min(resize)
    scale = min(long_side / max(h, w), short_side / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_its_data_loaders_and_evaluators(path, trees, tool, monkeypatch):
    cfg = load_config(path, trees, monkeypatch)
    dl = cfg.dataloader
    # ---- source loader, as configured (rare-class sampling from the statistics file, seed from train.seed)
    assert dl.train.get("compute_missing_stats", False) is False
    crop = tuple(dl.train.mapper.augmentations.crop_size)
    if max(crop) > CROP:
        crop = (LOADER_CROP, LOADER_CROP)
        dl.train.mapper.augmentations.crop_size = crop
    dl.train.num_workers = 0  # worker processes cost more than the tiny batches here
    batch_size = dl.train.total_batch_size
    train_loader = instantiate(dl.train)
    batch = next(iter(train_loader))
    assert len(batch) == batch_size
    for rec in batch:
        assert rec["image"].dtype == torch.uint8 and tuple(rec["image"].shape) == (3, *crop)
        assert tuple(rec["sem_seg"].shape) == crop
        values = set(rec["sem_seg"].unique().tolist())
        assert values <= set(range(19)) | {255} and values - {255}, values
    if _family(path) is not None:  # drawn from the generated tree of the configured source
        source_root = MetadataCatalog.get(dl.train.names).dataset_root
        assert source_root.startswith(trees["root"]) and all(r["file_name"].startswith(source_root) for r in batch)
    # ---- every target: test loader + evaluator built by the training tool, one item, a perfect prediction
    targets = list(dl.targets)
    assert targets
    dl.test.num_workers = 0
    for name in targets:
        loader = tool.build_target_loader(cfg, name)
        evaluator = tool.build_target_evaluator(cfg, name)
        (item,) = next(iter(loader))
        record = DatasetCatalog.get(name)[0]
        assert item["file_name"] == record["file_name"] and item["file_name"].startswith(trees["root"])
        h, w = record["height"], record["width"]
        assert (item["height"], item["width"]) == (h, w)
        sizes = dl.get("test_resize", None) or {}
        resize = sizes[name] if name in sizes else dl.get("test_resize_default", None)
        assert tuple(item["image"].shape) == (3, *_expected_test_size(h, w, resize)), (name, resize)
        if _family(path) is not None and not name.startswith("acdc_"):
            assert (h, w) == TARGET_SIZE
        # the ground truth as written (grayscale trainIds, or palette indices = trainIds for BDD colormaps)
        gt = torch.from_numpy(np.asarray(Image.open(record["sem_seg_file_name"])).astype(np.int64))
        assert gt.shape == (h, w)
        perfect = torch.nn.functional.one_hot(torch.where(gt == 255, 0, gt), 19).permute(2, 0, 1).float()
        evaluator.reset()
        evaluator.process([item], [{"sem_seg": perfect}])
        result = evaluator.evaluate()["sem_seg"]
        assert result["mIoU"] == pytest.approx(100.0), (name, result["mIoU"])
        evaluator.reset()  # and a wrong one does not
        evaluator.process([item], [{"sem_seg": perfect.roll(1, dims=0)}])
        assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(0.0), name
