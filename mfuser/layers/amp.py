"""Mixed-precision helpers for the model code: does this CPU compute bf16 natively, and float32 regions.

* :func:`cpu_bf16_support`: whether the processor has native bfloat16 arithmetic (AVX512-BF16 or AMX), as torch
  reports it. ``mfuser.engine.precision`` turns it into the run's precision policy; it lives here, below the
  engine, so that the model code and the benchmark can ask too.
* :func:`float32_region` / :func:`to_float32`: run a piece of code in float32 under an enclosing autocast (the
  losses, the final class scores, the deformable-attention sampling locations): autocast is switched off inside
  and the floating-point tensors are cast to float32 by the caller.
"""
from __future__ import annotations

import contextlib
import functools

import torch

__all__ = ["cpu_bf16_support", "float32_region", "to_float32"]

# torch.cpu's checks of the instruction sets that make bf16 fast on a CPU (oneDNN uses them for bf16 matmuls and
# convolutions; without them it emulates bf16 with float32 instructions and conversions, slower than float32)
_NATIVE_BF16_CHECKS = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> tuple[bool, str]:
    """``(native, what)``: whether this CPU has native bf16 arithmetic, and a few words saying what torch found.

    Asked of torch (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``, which read cpuinfo and
    check that the OS enables the state), never by parsing ``/proc/cpuinfo``. A torch without these checks falls
    back to oneDNN's own (``torch.ops.mkldnn._is_mkldnn_bf16_supported``), which is also true on AVX-512 parts
    that only emulate bf16; the words say so.
    """
    found, asked = [], False
    for name, attr in _NATIVE_BF16_CHECKS:
        check = getattr(torch.cpu, attr, None)
        if check is None:
            continue
        asked = True
        if check():
            found.append(name)
    if asked:
        return (True, " + ".join(found)) if found else (False, "no AVX512-BF16 or AMX")
    try:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False, "torch cannot tell"
    return ok, "oneDNN bf16 (may be emulated)" if ok else "no oneDNN bf16"


@contextlib.contextmanager
def float32_region(device_type: str):
    """Autocast off for ``device_type`` ("cpu" / "cuda") inside the block; cast the inputs with :func:`to_float32`.

    A no-op where no autocast is active.
    """
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def to_float32(obj):
    """``obj`` with every floating-point tensor (also inside dicts, lists and tuples) as float32; float64 stays."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() and obj.dtype != torch.float64 else obj
    if isinstance(obj, dict):
        return {k: to_float32(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_float32(v) for v in obj)
    return obj
