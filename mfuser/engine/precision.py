"""The precision policy of a run: which compute precision training and inference use on a device, and why.

One config key decides it, ``train.precision`` (configs/common/train.py):

=========  ==========================================================================================
``auto``   CPU: bf16 autocast where the processor computes bf16 natively (AVX512-BF16 or AMX, asked of torch:
           :func:`mfuser.layers.amp.cpu_bf16_support`), fp32 elsewhere. CUDA: what ``train.amp`` says
           (``enabled=True``: its ``precision``, bf16 or fp16; else fp32, the published setting).
``fp32``   no autocast anywhere.
``bf16``   bf16 autocast on any device; forced on a CPU without native bf16 it runs (slowly) and says so once.
=========  ==========================================================================================

``train.amp`` (``enabled``, ``precision``) stays the CUDA mixed-precision switch, and both keys are checked
together so that they never disagree: ``train.amp.enabled=True`` with ``train.precision=fp32`` is an error, as
is an ``amp.precision`` other than the forced ``train.precision``, and ``train.amp.enabled=True`` with
``train.precision=auto`` means "use amp.precision" on every device (fp16 needs CUDA). On the command line:
``train.precision=bf16`` (``tools/lazyconfig_train_net.py``, ``tools/demo.py``) or ``--precision`` (quickstart,
benchmark).

bf16 here is autocast: parameters, optimizer state and checkpoints stay float32; matmuls, convolutions and
attention run in bf16; the pieces that need float32 keep it inside the model (losses, the final class scores, the
deformable-attention sampling locations, normalisations of the fusion backbone; see ``mfuser/layers/amp.py``).

    choice = precision_from_config(cfg)        # Precision(name="bf16", device_type="cpu", reason=...)
    with choice.autocast():                    # inference / a training step
        ...
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings

import torch

from mfuser.layers.amp import cpu_bf16_support

__all__ = ["PRECISION_CHOICES", "Precision", "PrecisionError", "announce_precision", "precision_from_config",
           "resolve_precision"]

logger = logging.getLogger(__name__)

#: values of ``train.precision`` (and of the tools' ``--precision``)
PRECISION_CHOICES = ("auto", "fp32", "bf16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_AMP_NAMES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}

_warned_forced: set = set()
_announced: set = set()


class PrecisionError(ValueError):
    """``train.precision`` / ``train.amp`` hold a value that cannot work, or the two disagree."""


@dataclasses.dataclass(frozen=True)
class Precision:
    """A resolved precision.

    Attributes:
        name: what runs: "fp32", "bf16" or "fp16" (fp16: CUDA only).
        requested: the config value it came from ("auto", "fp32", "bf16").
        device_type: "cpu" or "cuda".
        reason: a few words saying why (shown at start-up and recorded in results.json).
        native_bf16: CPU only: whether the processor computes bf16 natively (None on CUDA).
    """

    name: str
    requested: str
    device_type: str
    reason: str
    native_bf16: bool | None = None

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return _DTYPES[self.name]

    def autocast(self):
        """Context manager: autocast to :attr:`dtype` on :attr:`device_type` (nothing for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """One line, e.g. ``precision: bf16 autocast on cpu (train.precision=auto; the CPU has AVX512-BF16)``."""
        what = "fp32" if self.dtype is None else f"{self.name} autocast"
        return f"precision: {what} on {self.device_type} ({self.reason})"

    def as_dict(self) -> dict:
        """The ``"precision"`` entry of results.json."""
        return {"name": self.name, "requested": self.requested, "device": self.device_type, "reason": self.reason}


def _device_type(device) -> str:
    kind = torch.device(device).type if not isinstance(device, torch.device) else device.type
    if kind not in ("cpu", "cuda"):
        raise PrecisionError(f"precision policy: device must be cpu or cuda, got {device!r}")
    return kind


def resolve_precision(requested: str = "auto", device="cpu", *, amp: dict | None = None) -> Precision:
    """Resolve ``train.precision`` (+ ``train.amp``) for ``device`` into a :class:`Precision`.

    Args:
        requested: "auto", "fp32" or "bf16" (see the module docstring).
        device: "cpu", "cuda", "cuda:1" or a torch.device.
        amp: ``train.amp`` (``{"enabled": bool, "precision": "bf16" | "fp16"}``) or None.

    Raises:
        PrecisionError: an unknown value, fp16 on a CPU, or ``train.amp`` contradicting ``train.precision``.
    """
    requested = str(requested).lower()
    if requested not in PRECISION_CHOICES:
        raise PrecisionError(f"train.precision must be one of {list(PRECISION_CHOICES)}, got {requested!r}")
    kind = _device_type(device)
    amp = dict(amp or {})
    amp_on = bool(amp.get("enabled", False))
    amp_name = _AMP_NAMES.get(str(amp.get("precision", "bf16")).lower())
    if amp_on and amp_name is None:
        raise PrecisionError(f"train.amp.precision must be bf16 or fp16, got {amp.get('precision')!r}")
    if amp_on and requested == "fp32":
        raise PrecisionError("train.amp.enabled=True contradicts train.precision=fp32; set one of them "
                             "(train.precision=auto follows train.amp)")
    if amp_on and requested == "bf16" and amp_name != "bf16":
        raise PrecisionError(f"train.amp.precision={amp_name} contradicts train.precision=bf16")
    native = cpu_bf16_support() if kind == "cpu" else None

    if requested == "fp32":
        name, reason = "fp32", "train.precision=fp32"
    elif requested == "bf16":
        name, reason = "bf16", "train.precision=bf16"
    elif amp_on:
        name, reason = amp_name, f"train.precision=auto with train.amp.enabled=True, precision {amp_name}"
    elif kind == "cuda":
        name, reason = "fp32", "train.precision=auto on CUDA follows train.amp, which is off"
    elif native[0]:
        name, reason = "bf16", f"train.precision=auto; the CPU has {native[1]}"
    else:
        name, reason = "fp32", f"train.precision=auto; the CPU has no native bf16 ({native[1]})"
    if name == "fp16" and kind != "cuda":
        raise PrecisionError("train.amp.precision=fp16 needs CUDA; use bf16 on CPU")
    if name == "bf16" and kind == "cpu" and not native[0]:
        reason += f"; this CPU has no native bf16 ({native[1]}): bf16 is emulated and slower than fp32"
        if native[1] not in _warned_forced:  # once per process
            _warned_forced.add(native[1])
            msg = (f"bf16 forced on a CPU without native bf16 support ({native[1]}): it runs, but slower than "
                   "fp32; train.precision=auto picks fp32 here")
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return Precision(name=name, requested=requested, device_type=kind, reason=reason,
                     native_bf16=None if native is None else native[0])


def precision_from_config(cfg, device=None) -> Precision:
    """:func:`resolve_precision` of ``cfg.train.precision`` and ``cfg.train.amp`` on ``device`` (default
    ``cfg.train.device``; a config without ``train`` resolves "auto" on the CPU)."""
    train = cfg.get("train", None) if hasattr(cfg, "get") else None
    train = train if train is not None else {}
    amp = train.get("amp", None)
    amp = {"enabled": amp.get("enabled", False), "precision": amp.get("precision", "bf16")} if amp else None
    return resolve_precision(train.get("precision", "auto"), device or train.get("device", "cpu"), amp=amp)


def announce_precision(choice: Precision) -> bool:
    """Say ``choice.describe()`` once per process and choice: logged (console and log.txt of a run), or printed
    to stdout where no logging is set up (a library caller, a test).

    Returns True when it was announced now, False when it had been already (periodic evaluations, several
    predictors of one process call this again)."""
    key = (choice.name, choice.device_type, choice.reason)
    if key in _announced:
        return False
    _announced.add(key)
    if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
        logger.info(choice.describe())
    else:
        print(f"[mfuser] {choice.describe()}", flush=True)
    return True
