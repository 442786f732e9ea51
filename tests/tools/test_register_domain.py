"""tools/register_domain.py: checks on the spot, list / remove, refusals; then a domain from a folder outside the
repository evaluated by name with the quickstart config (the issue's acceptance flow)."""
import importlib.util
import json
import os
import shutil

import pytest
import torch
from detectron2.data import DatasetCatalog

from mfuser.data import catalogue
from tests.conftest import REPO_ROOT
from tests.data.test_catalogue import write_domain

TOOL = os.path.join(REPO_ROOT, "tools", "register_domain.py")
QUICKSTART = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("register_domain_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture()
def root(catalogue_root):
    """An empty ``$DETECTRON2_DATASETS`` (tests/conftest.py)."""
    return catalogue_root


def run(tool, capsys, *argv):
    code = tool(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_checks_then_lists_and_removes(tool, root, tmp_path, capsys):
    images, labels, _ = write_domain(str(tmp_path / "mine"), image_ext=".jpg")
    entry = os.path.join(root, "mfuser_domains", "mine_val.json")
    code, out, err = run(tool, capsys, "mine_val", "--images", images, "--labels", labels)
    assert code == 0, err
    assert "2 image/label pairs" in out and "image suffix '.jpg'" in out  # the suffix found under --images
    assert "road" in out and "(ignore)" in out and "1024" in out  # pixels per class (road: 8 columns x 64 rows x 2)
    assert json.load(open(entry)) == {"mfuser_domain": 1, "images": images, "labels": labels, "image_suffix": ".jpg",
                                      "label_suffix": ".png", "label_format": "trainid", "num_images": 2}
    assert len(DatasetCatalog.get("mine_val")) == 2  # registered in this process too

    code, out, _ = run(tool, capsys, "--list")
    assert code == 0 and "mine_val" in out and "ok" in out

    code, _, err = run(tool, capsys, "mine_val", "--images", images, "--labels", labels)
    assert code == 2 and "already in the catalogue" in err and "--overwrite" in err
    code, _, err = run(tool, capsys, "mine_val", "--images", images, "--labels", labels, "--overwrite",
                       "--label-format", "cityscapes_id")  # stripes of trainIds hold 255: not Cityscapes ids
    assert code == 1 and err.count("\n") == 1 and entry in err and "Nothing was written" in err
    assert json.load(open(entry))["label_format"] == "trainid"  # the old entry is intact

    code, out, _ = run(tool, capsys, "--remove", "mine_val")
    assert code == 0 and not os.path.exists(entry) and "mine_val" not in DatasetCatalog.list()
    code, _, err = run(tool, capsys, "--remove", "mine_vall")
    assert code == 2 and "no catalogue entry 'mine_vall'" in err


def test_refusals_write_nothing(tool, root, tmp_path, capsys):
    images, labels, _ = write_domain(str(tmp_path / "mine"))
    folder = os.path.join(root, "mfuser_domains")
    cases = [
        (["cityscapes_val", "--images", images, "--labels", labels], 2, "clashes with the built-in dataset"),
        (["synthetic_bdd_val", "--images", images, "--labels", labels], 2, "clashes with the generated dataset"),
        (["x", "--images", str(tmp_path / "nope"), "--labels", labels], 2, "--images: no such folder"),
        (["x", "--images", images, "--labels", labels, "--label-suffix", ".jpg"], 1, "2 image(s) without a label"),
        (["null", "--images", images, "--labels", labels], 2, "dataset name 'null'"),
        (["x", "--images", images], 2, "--labels DIR is required"),
        (["x", "--list"], 2, "exactly one of"),
        ([], 2, "exactly one of"),
    ]
    for argv, status, message in cases:
        code, _, err = run(tool, capsys, *argv)
        assert code == status and message in err and err.startswith("error:") and err.count("\n") == 1, (argv, err)
    with pytest.raises(SystemExit) as info:
        tool(["x", "--images", images, "--labels", labels, "--label-format", "trainids"])
    assert info.value.code == 2 and "invalid choice: 'trainids'" in capsys.readouterr().err
    assert not os.path.isdir(folder) or os.listdir(folder) == []


@pytest.mark.slow
def test_a_registered_folder_is_evaluated_by_name_with_the_quickstart_config(tool, root, tmp_path, capsys):
    """The acceptance flow: register, then a fresh `import mfuser.data` knows the name, then
    `lazyconfig_train_net.py --eval-only ... 'dataloader.targets=[NAME]'` prints its mIoU; once the folder is gone,
    the same command fails with one line naming the entry file."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import default_argument_parser

    import mfuser.data
    from mfuser.engine.defaults import launch_train_net

    images, labels, _ = write_domain(str(tmp_path / "outside_the_repo"))
    assert run(tool, capsys, "dashcam_val", "--images", images, "--labels", labels)[0] == 0
    catalogue.register_catalogue(str(tmp_path / "no_catalogue"))  # forget it in this process ...
    assert "dashcam_val" not in DatasetCatalog.list()
    importlib.reload(mfuser.data)  # ... and import as a new process does
    assert "dashcam_val" in DatasetCatalog.list()

    torch.manual_seed(0)
    checkpoint = str(tmp_path / "tiny.pth")
    torch.save({"model": instantiate(LazyConfig.load(QUICKSTART).model).state_dict()}, checkpoint)
    argv = ["--config-file", QUICKSTART, "--eval-only", f"train.init_checkpoint={checkpoint}",
            "dataloader.targets=[dashcam_val]", "train.device=cpu", f"train.output_dir={tmp_path / 'out'}"]
    code = launch_train_net(default_argument_parser().parse_args(argv))
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    row = next(line for line in out.splitlines() if line.startswith("| dashcam_val"))
    miou = float(row.split("|")[2])
    assert 0.0 <= miou <= 100.0

    shutil.rmtree(images)
    code = launch_train_net(default_argument_parser().parse_args(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error:") and "dashcam_val.json" in err[-1] and images in err[-1]
