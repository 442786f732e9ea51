"""Stand-in LazyConfig for tool tests: the toy model + generated domains (``$MFUSER_TOY_DATA``) with the
project's common optimizer, schedule, train dict and data-loader pieces."""
import os

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

from mfuser.data.build import build_resumable_train_loader
from mfuser.data.mappers import MFuserSemanticDatasetMapper, MFuserTestDatasetMapper, build_train_augmentations
from mfuser.evaluation import build_sem_seg_evaluator
from tests.tools.toy_model import ToySemSeg, register_toy_domains

from ...configs.common.optim import AdamW as optimizer
from ...configs.common.schedule import lr_multiplier
from ...configs.common.train import train

register_toy_domains(os.environ["MFUSER_TOY_DATA"])

model = L(ToySemSeg)(num_classes=3, hidden=8)

optimizer.lr = 1e-2
optimizer.weight_decay = 1e-4

dataloader = dict(
    train=L(build_resumable_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="toy_source_train"),
        mapper=L(MFuserSemanticDatasetMapper)(
            is_train=True,
            augmentations=L(build_train_augmentations)(
                crop_size=(24, 32), ratio_range=None, cat_max_ratio=1.0, flip=False, photometric=False
            ),
            num_classes=3,
        ),
        total_batch_size=2,
        seed="${train.seed}",
        num_workers=0,
    ),
    targets=["toy_target_a", "toy_target_b"],
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="toy_target_a", filter_empty=False),
        mapper=L(MFuserTestDatasetMapper)(resize_to=None),
        num_workers=0,
    ),
    test_resize={"toy_target_b": (32, 24)},
    test_resize_default=None,
    evaluator=L(build_sem_seg_evaluator)(dataset_name="toy_target_a"),
)

train.device = "cpu"
train.max_iter = 6
train.checkpointer = dict(period=3, max_to_keep=10)
train.eval_period = 0
train.log_period = 1
lr_multiplier.warmup_iters = 2
