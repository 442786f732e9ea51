"""Learning-rate schedule of MFuser: linear warm-up, then poly decay to a floor (mmseg ``poly`` + ``min_lr``)."""
import logging

from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["PolyWithFloorParamScheduler", "build_warmup_poly_multiplier"]


class PolyWithFloorParamScheduler(ParamScheduler):
    """``value(w) = (1 - floor) * (1 - w) ** power + floor`` for ``w`` in [0, 1] (fvcore's
    ``PolynomialDecayParamScheduler`` decays to 0; mmseg's poly decays to ``min_lr``)."""

    def __init__(self, power: float = 0.9, floor: float = 0.0):
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        self.power = power
        self.floor = floor

    def __call__(self, where: float) -> float:
        return (1.0 - self.floor) * (1.0 - min(max(where, 0.0), 1.0)) ** self.power + self.floor


def build_warmup_poly_multiplier(
    *,
    max_iter: int,
    warmup_iters: int = 1500,
    warmup_factor: float = 1e-6,
    power: float = 0.9,
    base_lr: float = 1e-4,
    min_lr: float = 1e-6,
) -> ParamScheduler:
    """LR multiplier (over ``base_lr``) for detectron2's ``LRScheduler`` hook.

    Linear warm-up over ``warmup_iters`` from ``warmup_factor``, then poly(``power``) decay reaching
    ``min_lr`` (absolute) at ``max_iter``. Published: 1,500 warm-up iterations from 1e-6, power 0.9,
    min_lr 1e-6, 20k iterations, base lr 1e-4.
    """
    if max_iter <= 0:
        raise ValueError(f"max_iter must be > 0, got {max_iter}")
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    if warmup_iters >= max_iter:  # a short run (smoke test, quick fine-tune): warm up over half of it
        logging.getLogger(__name__).warning(
            f"lr_multiplier.warmup_iters={warmup_iters} >= train.max_iter={max_iter}; warming up over "
            f"{max_iter // 2} iterations instead"
        )
        warmup_iters = max_iter // 2
    poly = PolyWithFloorParamScheduler(power=power, floor=min_lr / base_lr)
    if warmup_iters == 0:
        return poly
    return WarmupParamScheduler(poly, warmup_factor=warmup_factor, warmup_length=warmup_iters / max_iter)
