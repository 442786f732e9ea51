"""Timing and peak-memory measurement of the benchmark (see :mod:`mfuser.utils.benchmark` for the method)."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import threading
import time

import torch

__all__ = ["BREAKDOWN_KEYS", "BenchmarkError", "CLOCKS", "PRECISION_DTYPES", "PeakMemory", "TARGET_BF16_OVER_FP32",
           "TARGET_CKPT_MEM_RATIO", "TARGET_TIME_OVER_FLOPS", "autocast", "clock", "random_image", "set_clock", "sync",
           "time_call", "to_mb"]

BREAKDOWN_KEYS = ("encoders", "fusers", "pyramid", "mtenhancer", "pixel_decoder", "transformer_decoder",
                  "text_encoder", "other")
TARGET_TIME_OVER_FLOPS = 1.10
TARGET_CKPT_MEM_RATIO = 2.0
#: issue 14: the full model under bf16 autocast at most this fraction of its fp32 time (same run)
TARGET_BF16_OVER_FP32 = 0.45
#: precision name -> autocast dtype (None: no autocast)
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class BenchmarkError(RuntimeError):
    """A bad argument or config: printed as one line, exit status 2."""


#: What a time is measured with: "wall" (time.perf_counter, the default) or "cpu" (time.process_time: the CPU time of
#: the process, all its threads). On a machine shared with other jobs, a one-thread run's CPU time does not count
#: the time slices the job waited for a core, which its wall time does; it still counts cache and memory-bandwidth
#: contention (and, in ``slide``, the 1 ms memory-sampling thread, well under 1 %).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def set_clock(name: str) -> None:
    """Select the clock of :func:`time_call` and the breakdown timers (a key of :data:`CLOCKS`)."""
    _clock[0] = CLOCKS[name]


def clock() -> float:
    """The current reading of the selected clock, in seconds."""
    return _clock[0]()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def random_image(hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=generator)


def time_call(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = clock()
    out = fn()
    sync(device)
    return clock() - start, out


# ------------------------------------------------------------------------------------------------ memory
@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        lib.malloc_trim  # noqa: B018 - glibc only; AttributeError elsewhere
        return lib
    except (OSError, AttributeError):
        return None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Context manager measuring the peak memory growth (bytes) of the code it wraps; see the module docstring.

    ``method`` names what is measured: "cuda_max_memory_allocated" or "cpu_rss_sampling_1ms".
    """

    def __init__(self, device: torch.device, interval: float = 1e-3):
        self.device = device
        self.interval = interval
        self.peak = 0
        if device.type == "cuda":
            self.method = "cuda_max_memory_allocated"
        elif os.path.exists("/proc/self/statm"):
            self.method = "cpu_rss_sampling_1ms"
        else:
            raise BenchmarkError("CPU peak memory needs /proc/self/statm (Linux); run with --device cuda elsewhere")

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            if _libc() is not None:
                _libc().malloc_trim(0)
            self._base = self._max = _rss_bytes()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._max = max(self._max, _rss_bytes())
            self._stop.set()
            self._thread.join()
            self.peak = self._max - self._base
        return False


def to_mb(n: int) -> float:
    return round(n / 2**20, 1)
