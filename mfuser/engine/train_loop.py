"""Trainers: detectron2's ``SimpleTrainer`` plus a NaN-loss guard, and a device-agnostic AMP trainer.

Why not detectron2's ``AMPTrainer``: it asserts CUDA and uses ``torch.cuda.amp`` only, while MFuser
must train on CPU too (bf16 autocast works there, and is what ``train.precision=auto`` picks on a CPU with
native bf16: :mod:`mfuser.engine.precision`; :func:`build_trainer` makes the trainer a precision asks for).
Why a guard of our own: detectron2 checks the loss
only on rank 0 after gathering, so with DDP the other ranks hang in the next collective; here every rank
checks its own loss terms before ``optimizer.step()`` and the ranks agree through one ``all_reduce``.
"""
import logging
import math
import time
from typing import Mapping

import torch
import torch.distributed as dist
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

__all__ = ["NonFiniteLossError", "check_losses_finite", "MFuserTrainer", "MFuserAMPTrainer", "PRECISIONS",
           "build_trainer"]

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "float16": torch.float16}


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the iteration and the terms."""


def check_losses_finite(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteLossError` on every rank if any rank has a non-finite loss term.

    Args:
        loss_dict: ``{name: scalar tensor}`` of this rank.
        iteration: the trainer iteration (0-based), named in the message.
    """
    values = {k: float(v.detach().float().cpu()) for k, v in loss_dict.items()}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    any_bad = bool(bad)
    if comm.get_world_size() > 1:
        device = next(iter(loss_dict.values())).device if loss_dict else torch.device("cpu")
        if dist.get_backend() == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        any_bad = bool(flag.item() > 0)
    if any_bad:
        where = f" on rank {comm.get_rank()}" if comm.get_world_size() > 1 else ""
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            msg = f"Non-finite loss at iteration {iteration}{where}: {terms} (all terms: {values})"
        else:
            msg = f"Non-finite loss at iteration {iteration} on another rank (this rank{where}: {values})"
        raise NonFiniteLossError(msg)


class MFuserTrainer(SimpleTrainer):
    """``SimpleTrainer`` that stops with :class:`NonFiniteLossError` before a NaN/inf loss reaches the weights."""

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        check_losses_finite(loss_dict, self.iter if iter is None else iter)
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


class MFuserAMPTrainer(MFuserTrainer):
    """Mixed-precision training on CUDA or CPU.

    Args:
        model, data_loader, optimizer: as in ``SimpleTrainer``.
        precision (str): "bf16" or "fp16". fp16 uses a ``torch.amp.GradScaler`` (CUDA only);
            bf16 needs no scaler.
        device_type (str): "cuda" or "cpu" (autocast device type).

    Only the forward (model and losses) runs under autocast; the model keeps its losses in float32 inside
    (``mfuser/modeling/heads/criterion.py``), the backward follows the forward's dtypes, and parameters, gradients
    and the optimizer state stay float32.
    """

    def __init__(self, model, data_loader, optimizer, *, precision: str = "bf16", device_type: str = "cuda", **kw):
        super().__init__(model, data_loader, optimizer, **kw)
        if precision not in PRECISIONS:
            raise ValueError(f"train.amp.precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision = PRECISIONS[precision]
        self.device_type = device_type
        if self.precision == torch.float16 and device_type != "cuda":
            raise ValueError("fp16 AMP needs CUDA; use train.amp.precision=bf16 on CPU")
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.precision == torch.float16)

    def run_step(self):
        assert self.model.training, "[MFuserAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler.is_enabled():
            get_event_storage().put_scalar("[metric]grad_scaler", self.grad_scaler.get_scale())
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self):
        ret = super().state_dict()
        ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if not self.grad_scaler.is_enabled():  # bf16: no scaler state to restore (a saved one came from fp16)
            return
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        else:
            logging.getLogger(__name__).warning("checkpoint has no grad_scaler state; starting a fresh scaler")


def build_trainer(model, data_loader, optimizer, *, precision: str = "fp32", device_type: str = "cpu"):
    """The trainer for a compute precision: :class:`MFuserTrainer` for "fp32", :class:`MFuserAMPTrainer` (autocast
    on ``device_type``) for "bf16" / "fp16" (e.g. ``precision_from_config(cfg).name``)."""
    if precision == "fp32":
        return MFuserTrainer(model, data_loader, optimizer)
    return MFuserAMPTrainer(model, data_loader, optimizer, precision=precision, device_type=device_type)
