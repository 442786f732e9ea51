"""Training / inference helpers for LazyConfig models: trainers with a NaN-loss guard, atomic strict
checkpoints, optimizer groups, the LR schedule and a predictor for the demo (the resumable sampler and the
train-loader builders are in :mod:`mfuser.data`)."""
from .checkpoint import CheckpointMismatchError, MFuserCheckpointer, optional_checkpoint_prefixes
from .optimizer import NO_DECAY_KEYWORDS, count_trainable, get_mfuser_optimizer_params
from .predictor import MFuserPredictor
from .schedule import PolyWithFloorParamScheduler, build_warmup_poly_multiplier
from .train_loop import MFuserAMPTrainer, MFuserTrainer, NonFiniteLossError, check_losses_finite

__all__ = [
    "CheckpointMismatchError",
    "MFuserCheckpointer",
    "optional_checkpoint_prefixes",
    "NO_DECAY_KEYWORDS",
    "count_trainable",
    "get_mfuser_optimizer_params",
    "MFuserPredictor",
    "PolyWithFloorParamScheduler",
    "build_warmup_poly_multiplier",
    "MFuserAMPTrainer",
    "MFuserTrainer",
    "NonFiniteLossError",
    "check_losses_finite",
]
