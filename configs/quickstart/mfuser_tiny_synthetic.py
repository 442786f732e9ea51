"""Quickstart: a tiny MFuser trained on CPU on generated data, evaluated on three shifted domains.

The same MFuser code as the published configs at tiny size (configs/common/models/mfuser_tiny.py:
randomly initialised frozen DINOv2/CLIP-family encoders, 4 blocks, width 64, 128-pixel crops). Data:
``datasets/generate_synthetic.py`` (source rendered like GTA5, targets like Cityscapes, BDD100K and
Mapillary, each with its own appearance shift), under ``$MFUSER_SYNTHETIC_ROOT`` (default
``datasets/synthetic``). Run it through ``tools/quickstart.py`` (generates the data, trains, evaluates,
plots, writes demo overlays) or directly:

    python tools/lazyconfig_train_net.py --config-file configs/quickstart/mfuser_tiny_synthetic.py
"""
import os

from detectron2.config import LazyCall as L

from mfuser.data import register_synthetic
from mfuser.utils.vocabulary import dataset_class_names

from ..common.data.semseg_dg import dataloader
from ..common.models.mfuser_tiny import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

SYNTHETIC_ROOT = os.environ.get("MFUSER_SYNTHETIC_ROOT", os.path.join("datasets", "synthetic"))
SOURCE, *TARGETS = register_synthetic(SYNTHETIC_ROOT)
CROP = 128
TEST_SIZE = (256, 128)  # generated images are 512x256; train crops come from images at 0.375-0.75x

dataloader.train.names = SOURCE
dataloader.train.mapper.augmentations.crop_size = (CROP, CROP)
dataloader.train.mapper.augmentations.ratio_range = (0.375, 0.75)
# Rare-class sampling keeps a crop once it holds more than 1500 pixels of the drawn class: 0.57 % of the published
# 512 x 512 crop. The same share of a 128 x 128 crop is 94 pixels; left at 1500 (9 % of the crop) a sample took 5.8
# tries on average (of at most 11), each re-resizing the whole image; at 94, 1.3 (counted from the resize calls of
# 160 samples; loading a batch of 4: 0.116 s -> 0.053 s).
dataloader.train.mapper.rcs_min_crop_pixels = round(1500 * CROP * CROP / (512 * 512))
dataloader.train.total_batch_size = 4
# The 400 source images take about 200 MiB decoded and each is read about 10 times in 1000 iterations: keep them in
# memory after the first read (PNG decoding was about half of loading a batch; a batch of 4 once the cache has
# filled: 0.033 s -> 0.012 s, the two loaders interleaved in one process)
dataloader.train.mapper.decoded_cache_mb = 512
dataloader.train.num_workers = 1
dataloader.test.num_workers = 1
dataloader.targets = TARGETS
dataloader.test_resize = {name: TEST_SIZE for name in TARGETS}

model.class_names = L(dataset_class_names)(dataset_name=SOURCE)
# All 3 windows of a 256 x 128 test image in one forward: a 128-pixel window of the tiny model is too small to
# keep a CPU busy, so batching pays here, unlike for the full-size models (one window per forward on a CPU, the
# per-device default; docs/benchmarks.md "Window batch per device"). Measured with tools/benchmark.py slide
# --size 128x256 --window-batch 3 --threads 1 --clock cpu: 0.186 s -> 0.154 s per image in fp32, 0.180 s -> 0.157 s
# in bf16.
model.window_batch_size = 3

optimizer.lr = 1e-3  # a from-scratch tiny head learns faster than the published 1e-4 allows in minutes
optimizer.weight_decay = 1e-4
lr_multiplier.warmup_iters = 50
lr_multiplier.min_lr = 1e-5

train.device = "cpu"
# bf16 autocast where the CPU computes bf16 natively, else fp32 (mfuser/engine/precision.py); the quickstart's
# --precision fp32|bf16|auto sets it
train.precision = "auto"
train.max_iter = 1000
train.checkpointer = dict(period=200, max_to_keep=2)
# evaluate on the first 20 images of each target every 250 iterations (the curves of miou.png), on all at the end
train.eval_period = 250
train.eval_subset = 20
train.log_period = 20
train.output_dir = "./output/quickstart"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
