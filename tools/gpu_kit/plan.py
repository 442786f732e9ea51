"""What the GPU run kit runs, in which order, with which time budgets (standard library only).

``run.py`` reads this module before anything is installed, so it imports nothing but the standard library. The
check functions themselves are in ``checks.py`` (one ``check_<name>(ctx) -> dict`` per entry of :data:`CHECKS`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["CHECKS", "Check", "REPO_ROOT", "DEFAULT_WHEEL_DIR", "DEFAULT_TIME_LIMIT_S", "WORKER_START_BUDGET_S",
           "INSTALL_BUDGET_S", "BUILD_BUDGET_S", "WHEELS_PYTHON", "check_names"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The ignored folder that ``gather_wheels.sh`` fills by default and ``run.py`` installs from by default.
DEFAULT_WHEEL_DIR = os.path.join(REPO_ROOT, "gpu_wheels")
#: The Python version gather_wheels.sh downloads for (the GPU machines' interpreter); run.py installs the default
#: wheel folder only into this version.
WHEELS_PYTHON = (3, 12)
#: Wall time of one whole ``run.py`` call (installs, kernel build and every check): the issue's 8 minutes on one
#: H200-class GPU, less a margin for writing the report and for the device tool's own start.
DEFAULT_TIME_LIMIT_S = 450
#: Seconds the worker may take to import torch, detectron2 and mfuser before its first check starts.
WORKER_START_BUDGET_S = 120
INSTALL_BUDGET_S = 150
BUILD_BUDGET_S = 240


@dataclass(frozen=True)
class Check:
    """One check: ``name`` (``checks.check_<name>``), what it does, and its time budget in seconds.

    ``budget_s`` holds for the full-size run, ``small_budget_s`` for ``--small``. A check still running when its
    budget (or the whole run's time limit) is spent is stopped and reported as failed ("timed out").
    """

    name: str
    what: str
    budget_s: float
    small_budget_s: float

    def budget(self, small: bool) -> float:
        return self.small_budget_s if small else self.budget_s


#: In run order: cheap checks first, so that a run cut short still reports them.
CHECKS = (
    Check("environment", "Python, torch, CUDA device, selective-scan backends and package versions", 60, 30),
    Check("scan", "selective-scan backends on the device vs the C++ CPU kernel at MFuser's shape: forward and "
                  "gradients, fp32 and bf16", 120, 30),
    Check("tiny_device_vs_cpu", "tiny MFuser forward + backward on the device vs on the CPU, same weights, fp32",
          90, 30),
    Check("tiny_train_bf16", "tiny MFuser, 100 training iterations under bf16 autocast on generated quickstart "
                             "data: finite, loss going down", 150, 45),
    Check("eva02_train_step", "full EVA02 MFuser (random frozen weights): one training step, batch 2, 512 crops, "
                              "bf16, activation checkpointing off and on: time and peak memory", 180, 30),
    Check("eva02_inference", "full EVA02 MFuser: whole-image and sliding-window inference on 1024x2048, window "
                             "batch 1 and 6: time, peak memory, agreement", 150, 30),
    Check("benchmark_model", "the figures of `tools/benchmark.py model` on the device (full model vs its frozen "
                             "encoders: time, FLOPs, breakdown)", 180, 40),
)


def check_names() -> list[str]:
    return [c.name for c in CHECKS]
