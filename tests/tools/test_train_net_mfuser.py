"""The training engine (tools/lazyconfig_train_net.py) with the real (tiny) MFuser: 2-process CPU DDP over gloo."""
import os

import pytest
import torch

from mfuser.engine.defaults import do_train
from tests.conftest import REPO_ROOT

CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from mfuser.data.synthetic import generate_all

    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_all(root, num_source=8, num_target=2, size=(256, 128))
    return root


def _ddp_worker(root, out):
    os.environ["MFUSER_SYNTHETIC_ROOT"] = root
    torch.set_num_threads(1)
    from detectron2.config import LazyConfig
    from detectron2.utils import comm

    opts = [f"train.output_dir={out}", "train.max_iter=2", "lr_multiplier.warmup_iters=1",
            "dataloader.targets=[]", "dataloader.train.total_batch_size=2", "dataloader.train.min_pixels=100"]
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), opts)
    trainer = do_train(cfg)
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, os.path.join(out, f"rank{comm.get_rank()}.pt"))


def test_two_process_cpu_ddp_trains_mfuser_with_identical_ranks(synthetic_root, tmp_path):
    from detectron2.engine import launch

    out = str(tmp_path)
    launch(_ddp_worker, 2, dist_url="auto", args=(synthetic_root, out))
    r0 = torch.load(os.path.join(out, "rank0.pt"))
    r1 = torch.load(os.path.join(out, "rank1.pt"))
    final = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)["model"]
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(r0[k], final[k], rtol=0, atol=0, msg=k)
