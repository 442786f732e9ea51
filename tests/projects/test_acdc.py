import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from mfuser.data import CITYSCAPES_CLASSES, read_label

from ..data.trees import blocks, save_gray, save_rgb

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACDC = os.path.join(REPO, "projects", "ACDC")


def _load_module():
    from projects.ACDC import acdc_datasets  # the project's module, imported from the checkout

    return acdc_datasets


def test_acdc_registers_and_loads(tmp_path):
    mod = _load_module()
    root = tmp_path / "acdc"
    for cond in mod.ACDC_CONDITIONS:
        for seq in ("GOPR0475", "GOPR0476"):
            stem = f"{seq}_frame_000041"
            save_rgb(str(root / "rgb_anon" / cond / "val" / seq / f"{stem}_rgb_anon.png"), 18, 32)
            save_gray(str(root / "gt" / cond / "val" / seq / f"{stem}_gt_labelTrainIds.png"), blocks(18, 32, range(19)))
    # test-split images have no labels and are not part of any registered split
    save_rgb(str(root / "rgb_anon" / "fog" / "test" / "GOPR0477" / "GOPR0477_frame_000001_rgb_anon.png"), 18, 32)
    try:
        names = mod.register_all_acdc(str(root))
        assert set(mod.ACDC_VAL_NAMES) <= set(names) and len(names) == 8
        for name in mod.ACDC_VAL_NAMES:
            dicts = DatasetCatalog.get(name)
            assert len(dicts) == 2 and (dicts[0]["height"], dicts[0]["width"]) == (18, 32)
            assert read_label(dicts[0]["sem_seg_file_name"]).shape == (18, 32)
            meta = MetadataCatalog.get(name)
            assert meta.stuff_classes == CITYSCAPES_CLASSES and meta.evaluator_type == "sem_seg"
        with pytest.raises(FileNotFoundError, match=r"image_root: expected the folder .*rgb_anon/fog/train"):
            DatasetCatalog.get("acdc_fog_train")
    finally:
        mod.register_all_acdc()  # back to the default root


def test_acdc_config_references_lead_config():
    cfg_file = os.path.join(ACDC, "configs", "mfuser_eva02_vitl_city_acdc.py")
    text = open(cfg_file).read()
    assert "from ....configs.mfuser.mfuser_eva02_vitl_city_512 import" in text
    lead = os.path.join(REPO, "configs", "mfuser", "mfuser_eva02_vitl_city_512.py")
    assert os.path.isfile(lead), f"the ACDC config imports {lead}, which does not exist"
    from detectron2.config import LazyConfig

    try:
        cfg = LazyConfig.load(cfg_file)
    except ImportError as e:  # the model code of other modules may not import yet; the path logic is ours
        if "acdc" in str(e).lower() or "does not exist" in str(e):
            raise
        pytest.skip(f"the lead config does not load yet: {e}")
    assert list(cfg.dataloader.targets) == list(_load_module().ACDC_VAL_NAMES)
    assert np.all([n in DatasetCatalog.list() for n in cfg.dataloader.targets])
