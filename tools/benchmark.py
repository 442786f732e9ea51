#!/usr/bin/env python
"""Model-level speed and memory benchmarks of MFuser, each reported as a ratio measured in one process.

Subcommands (all on CPU by default; ``--device cuda`` on a GPU, with autocast, see ``--amp``)::

    python tools/benchmark.py model --config-file configs/common/models/mfuser_eva02.py [--size 512]
    python tools/benchmark.py slide --config-file configs/common/models/mfuser_eva02.py --size 1024x2048 \
        [--window-batch 6]
    python tools/benchmark.py train-step --config-file configs/common/models/mfuser_eva02.py [--batch 2 --crop 512]

Common options: ``--device``, ``--threads N`` (torch.set_num_threads, default 1), ``--warmup``, ``--repeats``
(the minimum over the repeats is reported; ratios use the minima), ``--json`` (one JSON object on stdout
instead of a table), ``--amp``, ``--seed`` and trailing ``KEY=VALUE`` config overrides
(``LazyConfig.apply_overrides``, e.g. ``model.window_batch_size=3``). The config may be a model config
(``configs/common/models/*.py``) or a training config; both define a top-level ``model``. Weights are the
ones the config builds with (random when it names no checkpoint), which does not change speed or memory.

``model``: one forward of ``MFuser._forward_features`` (backbone -> MTEnhancer -> head, i.e. everything but
the final resize) on a batch-1 SIZE image, against the two frozen encoders alone on the same image (embed,
every block of both, DINOv2's final norm and the VLM's ``finish``; no fusion). The breakdown comes from
separate runs in which the pieces' entry points are wrapped with timers (encoder ``embed`` / ``block`` /
``final_norm`` / ``finish``; ``forward`` of every fuser (and fusion projection), the pyramid, the text
encoder, the MTEnhancer, the pixel decoder and the transformer decoder; on CUDA each timer synchronises);
"other" is the rest of the forward (token concatenation and splitting, residual adds, tap reshapes). FLOPs
are counted by fvcore on the same two functions (one fused multiply-add = one flop), with an added counter
for ``scaled_dot_product_attention`` (which fvcore's default table lacks, so the ViTs' attention would
otherwise be missed), ``_native_multi_head_attention``, ``_convolution_mode`` (padding="same" convs) and
``rms_norm``; ops fvcore does not count (elementwise ops, and the selective scan, a custom autograd function)
are listed in ``flops_uncounted_ops``.
``time_over_flops = full_over_encoders / flops_ratio``: 1.0 means the added modules run at the encoders'
FLOP rate; above 1 they are slower per FLOP. The same subcommand checks that in inference the frozen text
tower runs once for a fixed vocabulary, not per image: it counts forward calls of the text tower's
transformer while ``MFuser`` (eval mode, fresh cache) segments three small images in two calls.

``slide``: ``MFuser`` sliding-window inference on one SIZE image with ``window_batch_size=1`` (window by
window) and with ``--window-batch`` windows per forward; times, speed-up and peak memory of each, and the
largest difference between the two outputs (they must agree). Each warm-up run segments, in each mode, the
smallest image that fills one batch of windows (crop height x (crop width + (batch - 1) x stride width)), so
that warming up costs 1 + WINDOW_BATCH windows instead of two full images.

``train-step``: one optimizer step (forward with losses, backward, AdamW over the trainable parameters)
on BATCH random CROP x CROP images with random labels, with ``model.backbone.activation_checkpointing``
off and on; times and peak memory of each, ``mem_ratio = peak_mem_plain_mb / peak_mem_ckpt_mb``. The AdamW
state is created before the measurement (a step with zero gradients), so both modes measure the same
steady-state step. A 512 crop runs as it is (36 x 36 tokens for /14 patches, 32 x 32 for /16).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the allocation at the start of the measured
call (tensors only). On CPU there is no allocator statistic: a thread samples the process's resident set
(``/proc/self/statm``) every millisecond and the peak growth above the resident set at the start of the call
is reported, after ``malloc_trim`` has returned freed heap memory to the system (glibc). That counts
everything the call touches (tensors, oneDNN scratch, allocator slack) and misses spikes shorter than the
sampling period.

JSON keys (all subcommands): ``subcommand``, ``config``, ``device``, ``threads``, ``precision``
(``fp32`` / ``bf16`` / ``fp16``), ``warmup``, ``repeats``, ``overrides``, ``loadavg`` (1-minute load average
before and after), ``targets`` (target name -> bool, where the subcommand has a target); then

* ``model``: ``size`` [H, W], ``grid`` [h, w], ``time_encoders_s``, ``time_full_s``, ``full_over_encoders``,
  ``breakdown_s`` {encoders, fusers, pyramid, mtenhancer, pixel_decoder, transformer_decoder, text_encoder,
  other}, ``breakdown_total_s``, ``flops_encoders``, ``flops_full``, ``flops_ratio``, ``time_over_flops``,
  ``flops_breakdown`` (same keys as ``breakdown_s``; "other" = flops outside those modules),
  ``flops_uncounted_ops`` {op: count}, ``text_tower_calls``, ``text_tower_images``, ``text_cached``
  (None where the model has no ``text_encoder.tower.transformer`` to count).
* ``slide``: ``size``, ``crop_size``, ``stride``, ``num_windows``, ``window_batch``, ``time_single_s``,
  ``time_batched_s``, ``speedup`` (single / batched), ``peak_mem_single_mb``, ``peak_mem_batched_mb``,
  ``mem_ratio`` (batched / single), ``memory_method``, ``max_abs_diff``.
* ``train-step``: ``batch``, ``crop``, ``trainable_params``, ``time_plain_s``, ``time_ckpt_s``,
  ``time_ratio`` (ckpt / plain), ``peak_mem_plain_mb``, ``peak_mem_ckpt_mb``, ``mem_ratio`` (plain / ckpt),
  ``memory_method``, ``loss_plain``, ``loss_ckpt`` (the loss of each measured step; the steps update the
  weights, so the two differ). With ``--only MODE`` the other mode's keys are null and there is no target.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections import Counter

import torch
from torch import nn

# The benchmark never downloads anything (tokenizers / configs of open_clip and timm are local).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BREAKDOWN_KEYS = ("encoders", "fusers", "pyramid", "mtenhancer", "pixel_decoder", "transformer_decoder",
                  "text_encoder", "other")
TARGET_TIME_OVER_FLOPS = 1.10
TARGET_CKPT_MEM_RATIO = 2.0


class BenchmarkError(RuntimeError):
    """A bad argument or config: printed as one line, exit status 2."""


# ------------------------------------------------------------------------------------------------ arguments
def _size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '1024x2048' -> (1024, 2048) (height x width)."""
    parts = text.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with positive integers, got {text!r}")
    return hw


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", required=True, help="LazyConfig file defining a top-level `model`")
    common.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    common.add_argument("--threads", type=_positive, default=1, help="torch.set_num_threads (default 1)")
    common.add_argument("--warmup", type=_non_negative, default=1, help="untimed runs before timing (default 1)")
    common.add_argument("--repeats", type=_positive, default=3, help="timed runs; the minimum is reported (default 3)")
    common.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                        help="autocast: auto = on CUDA the config's train.amp precision (bf16 for model configs "
                             "or when train.amp is enabled), off where train.amp.enabled is False, and always off "
                             "on CPU; bf16 / fp16 force it (fp16: CUDA only)")
    common.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    common.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    common.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring (or docs/benchmarks.md) for methods and keys.")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    p = sub.add_parser("model", parents=[common], help="time and FLOPs: full model vs the frozen encoders alone")
    p.add_argument("--size", type=_size, default=(512, 512), help="input N or HxW (default 512)")
    p.add_argument("--no-flops", action="store_true", help="skip the fvcore FLOP count")
    p = sub.add_parser("slide", parents=[common], help="sliding-window inference: window by window vs batched")
    p.add_argument("--size", type=_size, default=(1024, 2048), help="image HxW (default 1024x2048)")
    p.add_argument("--window-batch", type=_positive, default=None,
                   help="windows per forward in batched mode (default: the config's window_batch_size)")
    p = sub.add_parser("train-step", parents=[common], help="one optimizer step with / without activation "
                                                            "checkpointing")
    p.add_argument("--batch", type=_positive, default=2, help="images per step (default 2)")
    p.add_argument("--crop", type=_size, default=(512, 512), help="crop N or HxW (default 512)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--only", choices=("plain", "ckpt"), default=None,
                   help="measure one mode only (where the other does not fit in memory); the other's keys are null")
    return parser


# ------------------------------------------------------------------------------------------------ setup
def load_model_config(config_file: str, opts: list[str]):
    from detectron2.config import LazyConfig

    if not os.path.isfile(config_file):
        raise BenchmarkError(f"config file not found: {config_file}")
    bad = [o for o in opts if "=" not in o]
    if bad:
        raise BenchmarkError(f"config overrides must be KEY=VALUE, got {bad}")
    cfg = LazyConfig.load(config_file)
    if "model" not in cfg:
        raise BenchmarkError(f"{config_file} defines no top-level `model`")
    try:
        cfg = LazyConfig.apply_overrides(cfg, opts)
    except Exception as e:  # noqa: BLE001 - KeyError (unknown key) or hydra's OverrideParseException
        raise BenchmarkError(f"config overrides {opts} cannot be applied: {type(e).__name__}: {e}") from e
    return cfg


def resolve_precision(amp: str, cfg, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32) following ``--amp`` (see its help)."""
    if amp == "off":
        return None
    if amp in ("bf16", "fp16"):
        if amp == "fp16" and device.type != "cuda":
            raise BenchmarkError("--amp fp16 needs --device cuda (use bf16 on CPU)")
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type != "cuda":
        return None
    train_amp = cfg.get("train", {}).get("amp", None) if hasattr(cfg, "get") else None
    if train_amp is None:
        return torch.bfloat16
    if not train_amp.get("enabled", False):
        return None
    return torch.float16 if train_amp.get("precision", "bf16") == "fp16" else torch.bfloat16


def build_model(cfg, device: torch.device) -> nn.Module:
    from detectron2.config import instantiate

    try:
        model = instantiate(cfg.model)
    except (TypeError, ValueError) as e:  # a bad override or config value: name it, no traceback
        raise BenchmarkError(f"building the config's `model` failed: {type(e).__name__}: {e}") from e
    missing = [a for a in ("backbone", "text_encoder", "text_enhancer", "head") if not hasattr(model, a)]
    if missing:
        raise BenchmarkError(f"the config's model ({type(model).__name__}) is not an MFuser: no {missing}")
    return model.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def random_image(hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=generator)


def time_call(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


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


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


# ------------------------------------------------------------------------------------------------ model
def encoders_forward(backbone: nn.Module, images: torch.Tensor):
    """The two frozen encoders alone, as the backbone runs them but without any fusion.

    ``embed`` + every ``block`` of both + DINOv2's ``final_norm`` + the VLM's ``finish`` (no residual).
    Returns (vfm tokens (B, P+hw, C), global (B, 1, Dt), dense (B, Dt, h, w)).
    """
    vfm, vlm = backbone.vfm, backbone.vlm
    grid = tuple(vfm.grid(tuple(images.shape[-2:])))
    xv, xl = vfm.embed(images), vlm.embed(images)
    for i in range(vfm.num_blocks):
        xv = vfm.block(i, xv, grid)
        xl = vlm.block(i, xl, grid)
    if hasattr(vfm, "final_norm"):
        xv = vfm.final_norm(xv)
    global_emb, dense_emb = vlm.finish(xl, grid)
    return xv, global_emb, dense_emb


def full_forward(model: nn.Module, images: torch.Tensor, text: torch.Tensor):
    """``MFuser._forward_features``: backbone, MTEnhancer, head. Returns a flat tuple of tensors."""
    outputs, dense_emb, enhanced = model._forward_features(images, text)
    return outputs["pred_logits"], outputs["pred_masks"], dense_emb, enhanced


def component_entry_points(model: nn.Module) -> dict[str, list[tuple[object, str]]]:
    """Breakdown key -> the (object, method name) pairs whose calls make up that component."""
    bb = model.backbone
    enc = [(bb.vfm, "embed"), (bb.vfm, "block"), (bb.vlm, "embed"), (bb.vlm, "block"), (bb.vlm, "finish")]
    if hasattr(bb.vfm, "final_norm"):
        enc.append((bb.vfm, "final_norm"))
    fusers = [(m, "forward") for m in bb.fusers]
    for name in ("proj_in", "proj_out"):
        fusers += [(m, "forward") for m in getattr(bb, name, None) or []]
    if getattr(bb, "proj_final", None) is not None:
        fusers.append((bb.proj_final, "forward"))
    return {
        "encoders": enc,
        "fusers": fusers,
        "pyramid": [(bb.pyramid, "forward")],
        "mtenhancer": [(model.text_enhancer, "forward")],
        "pixel_decoder": [(model.head.pixel_decoder, "forward")],
        "transformer_decoder": [(model.head.transformer_decoder, "forward")],
        "text_encoder": [(model.text_encoder, "forward")],
    }


# module path (under the full-model FLOP wrapper) -> breakdown key
_FLOP_SCOPES = {
    "model.backbone.vfm": "encoders",
    "model.backbone.vlm": "encoders",
    "model.backbone.fusers": "fusers",
    "model.backbone.proj_in": "fusers",
    "model.backbone.proj_out": "fusers",
    "model.backbone.proj_final": "fusers",
    "model.backbone.pyramid": "pyramid",
    "model.text_enhancer": "mtenhancer",
    "model.head.pixel_decoder": "pixel_decoder",
    "model.head.transformer_decoder": "transformer_decoder",
    "model.text_encoder": "text_encoder",
}


@contextlib.contextmanager
def timed_components(model: nn.Module, device: torch.device):
    """Wrap every component entry point with a timer; yields a dict key -> accumulated seconds.

    Each entry point is shadowed by an instance attribute (restored on exit); on CUDA each timer synchronises.
    """
    totals = dict.fromkeys(BREAKDOWN_KEYS, 0.0)
    patched = []

    def wrap(key, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            _sync(device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(device)
                totals[key] += time.perf_counter() - start

        return timed

    try:
        for key, points in component_entry_points(model).items():
            for obj, name in points:
                object.__setattr__(obj, name, wrap(key, getattr(obj, name)))
                patched.append((obj, name))
        yield totals
    finally:
        for obj, name in patched:
            object.__delattr__(obj, name)


def _sdpa_flop_jit(inputs, outputs):
    """aten::scaled_dot_product_attention: q k^T and attn v, as multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _native_mha_flop_jit(inputs, outputs):
    """aten::_native_multi_head_attention (nn.MultiheadAttention's inference fast path): projections + attention."""
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])  # (B, Lq, E), (B, Lk, E)
    batch, lq, lk, e = math.prod(q[:-2]), q[-2], k[-2], q[-1]
    return batch * (2 * lq * e * e + 2 * lk * e * e + 2 * lq * lk * e)


def _conv_mode_flop_jit(inputs, outputs):
    """aten::_convolution_mode (a convolution with padding="same"/"valid"), counted as fvcore counts convs."""
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    return conv_flop_count(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]))


def _extra_flop_handles() -> dict:
    """Ops fvcore's default table lacks, counted with fvcore's conventions (see the module docstring)."""
    from fvcore.nn.jit_handles import norm_flop_counter

    return {
        "aten::scaled_dot_product_attention": _sdpa_flop_jit,
        "aten::_native_multi_head_attention": _native_mha_flop_jit,
        "aten::_convolution_mode": _conv_mode_flop_jit,
        "aten::rms_norm": norm_flop_counter(2),
    }


class _Wrapper(nn.Module):
    """Turns a function of ``model`` into a module fvcore can trace (``model`` is a submodule for by_module)."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(self.model, *args)


def count_flops(module: nn.Module, inputs: tuple) -> tuple[float, dict[str, int], Counter]:
    """(total, by_module, unsupported op counts) by fvcore (one fused multiply-add = one flop)."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**_extra_flop_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    total = float(analysis.total())
    return total, analysis.by_module(), Counter(analysis.unsupported_ops())


def count_text_tower_calls(model: nn.Module, device: torch.device, dtype, generator) -> tuple[int | None, int]:
    """Forward calls of the text tower's transformer while MFuser segments 3 small images in 2 calls (eval)."""
    tower = getattr(getattr(model.text_encoder, "tower", None), "transformer", None)
    if not isinstance(tower, nn.Module):
        return None, 0
    calls = [0]

    def hook(*_):
        calls[0] += 1

    saved = (model.inference_mode, model.crop_size)
    # A small image whose token grid (4 x 4 or more, even) survives the pyramid's stride-2 pooling.
    side = 4 * int(model.backbone.vfm.patch_size)  # a 4x4 token grid survives the stride-32 pooling
    model.inference_mode, model.crop_size = "whole", (side, side)
    handle = tower.register_forward_pre_hook(hook)
    try:
        model.eval()  # a fresh eval(): the text encoder's train()/eval() clears its cache
        images = [{"image": random_image((side, side), generator)} for _ in range(3)]
        with torch.no_grad(), _autocast(device, dtype):
            model(images[:2])
            model(images[2:])
    finally:
        handle.remove()
        model.inference_mode, model.crop_size = saved
    return calls[0], len(images)


def run_model(args, cfg, model, device, dtype) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    model.eval()
    text_calls, text_images = count_text_tower_calls(model, device, dtype, gen)
    images = random_image(args.size, gen)[None].float().to(device)
    grid = tuple(model.backbone.vfm.grid(args.size))
    with torch.no_grad(), _autocast(device, dtype):
        text = model._text()
        enc = functools.partial(encoders_forward, model.backbone, images)
        full = functools.partial(full_forward, model, images, text)
        for _ in range(args.warmup):
            enc()
            full()
        t_enc, t_full = [], []
        for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
            t_enc.append(time_call(enc, device)[0])
            t_full.append(time_call(full, device)[0])
        breakdown = None
        for _ in range(args.repeats):  # separate runs: the timers (and their syncs) perturb the totals
            with timed_components(model, device) as totals:
                elapsed = time_call(full, device)[0]
            totals["other"] = max(elapsed - sum(totals.values()), 0.0)
            if breakdown is None or elapsed < breakdown[0]:
                breakdown = (elapsed, dict(totals))
    result = {
        "size": list(args.size),
        "grid": list(grid),
        "time_encoders_s": min(t_enc),
        "time_full_s": min(t_full),
        "full_over_encoders": min(t_full) / min(t_enc),
        "breakdown_s": breakdown[1],
        "breakdown_total_s": breakdown[0],
        "text_tower_calls": text_calls,
        "text_tower_images": text_images,
        "text_cached": None if text_calls is None else text_calls <= 1,
    }
    targets = {"text_tower_once": bool(result["text_cached"])}
    if not args.no_flops:
        with torch.no_grad(), _autocast(device, dtype):
            f_enc, _, _ = count_flops(_Wrapper(model.backbone, encoders_forward), (images,))
            f_full, by_module, unsupported = count_flops(_Wrapper(model, full_forward), (images, text))
        flops_breakdown = dict.fromkeys(BREAKDOWN_KEYS, 0)
        for scope, key in _FLOP_SCOPES.items():
            flops_breakdown[key] += int(by_module.get(scope, 0))
        flops_breakdown["other"] = int(f_full) - sum(flops_breakdown.values())
        result.update(
            flops_encoders=f_enc,
            flops_full=f_full,
            flops_ratio=f_full / f_enc,
            time_over_flops=result["full_over_encoders"] / (f_full / f_enc),
            flops_breakdown=flops_breakdown,
            flops_uncounted_ops=dict(sorted(unsupported.items())),
        )
        targets[f"time_over_flops<={TARGET_TIME_OVER_FLOPS}"] = result["time_over_flops"] <= TARGET_TIME_OVER_FLOPS
    result["targets"] = targets
    return result


# ------------------------------------------------------------------------------------------------ slide
def run_slide(args, cfg, model, device, dtype) -> dict:
    from mfuser.modeling.meta_arch.mfuser import _window_starts

    gen = torch.Generator().manual_seed(args.seed)
    model.eval()
    model.inference_mode = "slide"
    window_batch = args.window_batch or int(model.window_batch_size)
    h, w = args.size
    (ch, cw), (sh, sw) = model.crop_size, model.stride
    num_windows = len(_window_starts(max(h, ch), ch, sh)) * len(_window_starts(max(w, cw), cw, sw))
    inputs = [{"image": random_image(args.size, gen), "height": h, "width": w}]
    modes = {"single": 1, "batched": window_batch}

    def infer(batch_size):
        model.window_batch_size = batch_size
        return model(inputs)[0]["sem_seg"]

    def warm(batch_size):
        # Warm-up on the smallest image that makes one full batch of windows (a row of ``batch_size`` windows),
        # not on the full image: a full-size model needs tens of seconds per window on a CPU.
        model.window_batch_size = batch_size
        wh = (ch, cw + (batch_size - 1) * sw)
        model([{"image": random_image(wh, gen), "height": wh[0], "width": wh[1]}])

    with torch.no_grad(), _autocast(device, dtype):
        for _ in range(args.warmup):
            for size in modes.values():
                warm(size)
        times = {m: [] for m in modes}
        peaks = {m: [] for m in modes}
        outputs = {}
        for _ in range(args.repeats):
            for mode, size in modes.items():
                with PeakMemory(device) as mem:
                    t, outputs[mode] = time_call(functools.partial(infer, size), device)
                times[mode].append(t)
                peaks[mode].append(mem.peak)
    diff = (outputs["single"].float() - outputs["batched"].float()).abs().max().item()
    t1, tb = min(times["single"]), min(times["batched"])
    m1, mb = max(peaks["single"]), max(peaks["batched"])
    return {
        "size": [h, w],
        "crop_size": [ch, cw],
        "stride": [sh, sw],
        "num_windows": num_windows,
        "window_batch": window_batch,
        "time_single_s": t1,
        "time_batched_s": tb,
        "speedup": t1 / tb,
        "peak_mem_single_mb": _mb(m1),
        "peak_mem_batched_mb": _mb(mb),
        "mem_ratio": (mb / m1) if m1 > 0 else None,
        "memory_method": mem.method,
        "max_abs_diff": diff,
        "targets": {"batched_faster": tb < t1},
    }


# ------------------------------------------------------------------------------------------------ train-step
def run_train_step(args, cfg, model, device, dtype) -> dict:
    if not hasattr(model.backbone, "activation_checkpointing"):
        raise BenchmarkError("model.backbone has no `activation_checkpointing` flag")
    gen = torch.Generator().manual_seed(args.seed)
    num_classes = model.num_classes
    batch = []
    for _ in range(args.batch):
        labels = torch.randint(0, num_classes, args.crop, generator=gen)
        labels[torch.rand(args.crop, generator=gen) < 0.05] = model.ignore_label
        batch.append({"image": random_image(args.crop, gen), "sem_seg": labels})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BenchmarkError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    # Create the AdamW state now (zero gradients), so that every measured step is a steady-state step.
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    def step():
        with _autocast(device, dtype):
            losses = model(batch)
        loss = sum(losses.values())
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    modes = {"plain": False, "ckpt": True}
    if args.only:
        modes = {args.only: modes[args.only]}
    saved = model.backbone.activation_checkpointing
    times = {m: [] for m in modes}
    peaks = {m: [] for m in modes}
    losses = {}
    method = PeakMemory(device).method
    try:
        for _ in range(args.warmup):
            for flag in modes.values():
                model.backbone.activation_checkpointing = flag
                step()
        for _ in range(args.repeats):
            for mode, flag in modes.items():
                model.backbone.activation_checkpointing = flag
                with PeakMemory(device) as mem:
                    t, losses[mode] = time_call(step, device)
                times[mode].append(t)
                peaks[mode].append(mem.peak)
    finally:
        model.backbone.activation_checkpointing = saved
    tp, tc = (min(times[m]) if m in times else None for m in ("plain", "ckpt"))
    mp, mc = (max(peaks[m]) if m in peaks else None for m in ("plain", "ckpt"))
    ratio = (mp / mc) if mp is not None and mc else None
    targets = {}
    if ratio is not None:
        targets[f"mem_ratio>={TARGET_CKPT_MEM_RATIO}"] = ratio >= TARGET_CKPT_MEM_RATIO
    return {
        "batch": args.batch,
        "crop": list(args.crop),
        "trainable_params": sum(p.numel() for p in params),
        "time_plain_s": tp,
        "time_ckpt_s": tc,
        "time_ratio": (tc / tp) if tp and tc else None,
        "peak_mem_plain_mb": None if mp is None else _mb(mp),
        "peak_mem_ckpt_mb": None if mc is None else _mb(mc),
        "mem_ratio": ratio,
        "memory_method": method,
        "loss_plain": losses.get("plain"),
        "loss_ckpt": losses.get("ckpt"),
        "targets": targets,
    }


# ------------------------------------------------------------------------------------------------ output
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def print_table(result: dict, file=sys.stdout) -> None:
    width = max(len(k) for k in result)
    for k, v in result.items():
        if isinstance(v, dict) and v and k in ("breakdown_s", "flops_breakdown"):
            total = sum(v.values()) or 1
            print(f"{k:<{width}}", file=file)
            for name, x in v.items():
                print(f"  {name:<{width - 2}}  {_fmt(x):>10}  ({100 * x / total:5.1f} %)", file=file)
        else:
            print(f"{k:<{width}}  {_fmt(v)}", file=file)


RUNNERS = {"model": run_model, "slide": run_slide, "train-step": run_train_step}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Imported libraries script a few helpers with torch.jit, which warns on every run; not ours to fix.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"benchmark: --device must be cpu or cuda[:i], got {args.device!r}", file=sys.stderr)
        return 2
    try:
        if device.type not in ("cpu", "cuda"):
            raise BenchmarkError(f"--device must be cpu or cuda[:i], got {args.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError(f"--device {args.device}: CUDA is not available")
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        cfg = load_model_config(args.config_file, args.opts)
        dtype = resolve_precision(args.amp, cfg, device)
        load_before = os.getloadavg()[0]
        model = build_model(cfg, device)
        result = {
            "subcommand": args.subcommand,
            "config": args.config_file,
            "device": str(device),
            "threads": args.threads,
            "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
            "warmup": args.warmup,
            "repeats": args.repeats,
            "overrides": list(args.opts),
        }
        result.update(RUNNERS[args.subcommand](args, cfg, model, device, dtype))
    except BenchmarkError as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return 2
    result["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["targets"] = result.pop("targets")
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
