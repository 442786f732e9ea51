"""The three measurements of the benchmark: ``model``, ``slide`` and ``train-step`` (one function each)."""
from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from mfuser.utils.flops import FunctionModule, count_flops

from .measure import (
    BREAKDOWN_KEYS,
    TARGET_CKPT_MEM_RATIO,
    TARGET_TIME_OVER_FLOPS,
    BenchmarkError,
    PeakMemory,
    autocast,
    clock,
    random_image,
    sync,
    time_call,
    to_mb,
)

__all__ = ["run_model", "run_slide", "run_train_step"]

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
    """``MFuser.forward_features``: backbone, MTEnhancer, head. Returns a flat tuple of tensors."""
    outputs, dense_emb, enhanced = model.forward_features(images, text)
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
            sync(device)
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(device)
                totals[key] += clock() - start

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
        with torch.no_grad(), autocast(device, dtype):
            model(images[:2])
            model(images[2:])
    finally:
        handle.remove()
        model.inference_mode, model.crop_size = saved
    return calls[0], len(images)


def run_model(args, cfg, model, device, dtypes: dict) -> dict:
    """Time the full model and the encoders alone in every precision of ``dtypes`` ({name: autocast dtype or None},
    the first one the reported precision), interleaved within each repeat; FLOPs and the text-tower check once.

    Returns the first precision's keys at the top level and ``{"by_precision": {name: per-precision keys}}``.
    """
    gen = torch.Generator().manual_seed(args.seed)
    model.eval()
    first = next(iter(dtypes.values()))
    text_calls, text_images = count_text_tower_calls(model, device, first, gen)
    images = random_image(args.size, gen)[None].float().to(device)
    grid = tuple(model.backbone.vfm.grid(args.size))
    t_enc = {n: [] for n in dtypes}
    t_full = {n: [] for n in dtypes}
    breakdown = dict.fromkeys(dtypes)
    with torch.no_grad():
        texts = {}
        for name, dtype in dtypes.items():
            with autocast(device, dtype):
                texts[name] = model.class_embeddings()
        enc = functools.partial(encoders_forward, model.backbone, images)

        def full(name):
            return full_forward(model, images, texts[name])

        for _ in range(args.warmup):
            for name, dtype in dtypes.items():
                with autocast(device, dtype):
                    enc()
                    full(name)
        for _ in range(args.repeats):  # interleaved, so that load changes hit every measurement alike
            for name, dtype in dtypes.items():
                with autocast(device, dtype):
                    t_enc[name].append(time_call(enc, device)[0])
                    t_full[name].append(time_call(functools.partial(full, name), device)[0])
        for _ in range(args.repeats):  # separate runs: the timers (and their syncs) perturb the totals
            for name, dtype in dtypes.items():
                with autocast(device, dtype), timed_components(model, device) as totals:
                    elapsed = time_call(functools.partial(full, name), device)[0]
                totals["other"] = max(elapsed - sum(totals.values()), 0.0)
                if breakdown[name] is None or elapsed < breakdown[name][0]:
                    breakdown[name] = (elapsed, dict(totals))
    per = {}
    for name in dtypes:
        total, parts = breakdown[name]
        per[name] = {
            "time_encoders_s": min(t_enc[name]),
            "time_full_s": min(t_full[name]),
            "full_over_encoders": min(t_full[name]) / min(t_enc[name]),
            "breakdown_s": parts,
            "breakdown_total_s": total,
            "added_share": added_share(parts),
        }
    result = {
        "size": list(args.size),
        "grid": list(grid),
        **per[next(iter(dtypes))],
        "text_tower_calls": text_calls,
        "text_tower_images": text_images,
        "text_cached": None if text_calls is None else text_calls <= 1,
        "by_precision": per,
    }
    targets = {"text_tower_once": bool(result["text_cached"])}
    if not args.no_flops:
        with torch.no_grad(), autocast(device, first):
            f_enc, _, _ = count_flops(FunctionModule(model.backbone, encoders_forward), (images,))
            f_full, by_module, unsupported = count_flops(FunctionModule(model, full_forward),
                                                         (images, texts[next(iter(dtypes))]))
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


def added_share(breakdown: dict) -> float:
    """The share of the full forward's time spent outside the frozen encoders (fusers, pyramid, heads, "other")."""
    total = sum(breakdown.values())
    return (total - breakdown["encoders"]) / total if total > 0 else float("nan")


# ------------------------------------------------------------------------------------------------ slide
def run_slide(args, cfg, model, device, dtypes: dict) -> dict:
    """Sliding-window inference with one window per forward and with ``--window-batch`` windows per forward, in
    every precision of ``dtypes`` (interleaved within each repeat). Returns the first precision's keys at the top
    level and ``by_precision`` (with ``agreement`` of each precision's labels with the first one's)."""
    from mfuser.modeling.meta_arch.mfuser import DEFAULT_WINDOW_BATCH, window_starts

    gen = torch.Generator().manual_seed(args.seed)
    model.eval()
    model.inference_mode = "slide"
    window_batch = args.window_batch or model.window_batch_size or DEFAULT_WINDOW_BATCH
    h, w = args.size
    (ch, cw), (sh, sw) = model.crop_size, model.stride
    num_windows = len(window_starts(max(h, ch), ch, sh)) * len(window_starts(max(w, cw), cw, sw))
    inputs = [{"image": random_image(args.size, gen), "height": h, "width": w}]
    modes = {"single": 1, "batched": window_batch}
    saved = model.window_batch_size

    def infer(batch_size):
        model.window_batch_size = batch_size
        return model(inputs)[0]["sem_seg"]

    def warm(batch_size):
        # Warm-up on the smallest image that makes one full batch of windows (a row of ``batch_size`` windows),
        # not on the full image: a full-size model needs tens of seconds per window on a CPU.
        model.window_batch_size = batch_size
        wh = (ch, cw + (batch_size - 1) * sw)
        model([{"image": random_image(wh, gen), "height": wh[0], "width": wh[1]}])

    times = {(n, m): [] for n in dtypes for m in modes}
    peaks = {(n, m): [] for n in dtypes for m in modes}
    outputs = {}
    try:
        with torch.no_grad():
            for _ in range(args.warmup):
                for dtype in dtypes.values():
                    with autocast(device, dtype):
                        for size in modes.values():
                            warm(size)
            for _ in range(args.repeats):
                for name, dtype in dtypes.items():
                    for mode, size in modes.items():
                        with autocast(device, dtype), PeakMemory(device) as mem:
                            t, outputs[name, mode] = time_call(functools.partial(infer, size), device)
                        times[name, mode].append(t)
                        peaks[name, mode].append(mem.peak)
    finally:
        model.window_batch_size = saved
    first = next(iter(dtypes))
    per = {}
    for name in dtypes:
        t1, tb = min(times[name, "single"]), min(times[name, "batched"])
        m1, mb = max(peaks[name, "single"]), max(peaks[name, "batched"])
        single, batched = outputs[name, "single"], outputs[name, "batched"]
        per[name] = {
            "time_single_s": t1,
            "time_batched_s": tb,
            "speedup": t1 / tb,
            "peak_mem_single_mb": to_mb(m1),
            "peak_mem_batched_mb": to_mb(mb),
            "mem_ratio": (mb / m1) if m1 > 0 else None,
            "max_abs_diff": (single.float() - batched.float()).abs().max().item(),
        }
        if name != first:  # how far this precision's prediction is from the first one's (same image, single mode)
            ref = outputs[first, "single"]
            per[name]["agreement"] = {
                "pixels_same_label": (single.argmax(0) == ref.argmax(0)).float().mean().item(),
                "max_abs_score_diff": (single.float() - ref.float()).abs().max().item(),
            }
    best = min(modes, key=lambda m: min(times[first, m]))
    return {
        "size": [h, w],
        "crop_size": [ch, cw],
        "stride": [sh, sw],
        "num_windows": num_windows,
        "window_batch": window_batch,
        **per[first],
        "memory_method": mem.method,
        "faster_window_batch": modes[best],
        "by_precision": per,
        "targets": {"batched_faster": per[first]["time_batched_s"] < per[first]["time_single_s"]},
    }


# ------------------------------------------------------------------------------------------------ train-step
def run_train_step(args, cfg, model, device, dtypes: dict) -> dict:
    """One optimizer step without / with activation checkpointing, in the first precision of ``dtypes`` only."""
    dtype = next(iter(dtypes.values()))
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
        with autocast(device, dtype):
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
        "peak_mem_plain_mb": None if mp is None else to_mb(mp),
        "peak_mem_ckpt_mb": None if mc is None else to_mb(mc),
        "mem_ratio": ratio,
        "memory_method": method,
        "loss_plain": losses.get("plain"),
        "loss_ckpt": losses.get("ckpt"),
        "targets": targets,
    }
