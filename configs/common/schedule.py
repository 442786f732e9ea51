"""LR multiplier: linear warm-up over 1,500 iterations from 1e-6 x lr, then poly (power 0.9) down to an
absolute 1e-6 at ``train.max_iter`` (mmseg ``poly`` with ``min_lr=1e-6``). It follows ``train.max_iter`` and
``optimizer.lr`` through interpolation, so overriding either keeps the schedule consistent."""
from detectron2.config import LazyCall as L

from mfuser.engine.schedule import build_warmup_poly_multiplier

lr_multiplier = L(build_warmup_poly_multiplier)(
    max_iter="${train.max_iter}",
    warmup_iters=1500,
    warmup_factor=1e-6,
    power=0.9,
    base_lr="${optimizer.lr}",
    min_lr=1e-6,
)
