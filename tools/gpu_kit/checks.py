"""The checks of the GPU run kit, one ``check_<name>(ctx) -> dict`` per entry of ``plan.CHECKS``.

Each check returns ``{"passed": bool, "numbers": {...}}`` (``"failures"``: the conditions that failed, when any) and
raises on an error; ``worker.py`` times it and records the result. Every check runs on ``ctx.device`` (``cuda`` on a
GPU machine; ``cpu`` for the dry run, where a "device vs CPU" comparison compares the CPU against itself and still
exercises the code path). ``ctx.small`` replaces the full-size EVA02 model by the tiny one and shrinks sizes and
iterations (:data:`SIZES`).

What each figure means: docs/gpu.md. The kit measures what the project's tools measure, with their code:
``eva02_train_step`` and ``benchmark_model`` run ``tools/benchmark.py`` (its ``main``, JSON output) in the worker,
``eva02_inference`` uses the benchmark's ``PeakMemory`` / ``time_call``, and ``scan`` the inputs, timing and error
measure of ``tools/benchmark_scan.py``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import torch
from plan import REPO_ROOT

__all__ = ["Context", "SIZES", "CHECK_FUNCTIONS"]

FULL_CONFIG = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_eva02.py")
TINY_CONFIG = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
QUICKSTART_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "mfuser_tiny_synthetic.py")

#: Sizes per mode. ``scan_shape`` None = the defaults of tools/benchmark_scan.py (MFuser's fusion shape).
SIZES = {
    "full": dict(
        scan_shape=None, scan_repeats=3,
        compare_batch=2, compare_size=128,
        train_iters=100, train_batch=4, train_crop=128, train_images=16, train_image_size=(512, 256),
        step_config=FULL_CONFIG, step_batch=2, step_crop=512, step_warmup=1,
        infer_config=FULL_CONFIG, infer_size=(1024, 2048), infer_stride=None,
        bench_config=FULL_CONFIG, bench_argv=["--size", "512", "--warmup", "1", "--repeats", "3"],
    ),
    "small": dict(
        scan_shape=dict(batch=1, dim=64, length=300, state=16), scan_repeats=1,
        compare_batch=1, compare_size=64,
        train_iters=12, train_batch=2, train_crop=64, train_images=4, train_image_size=(256, 128),
        step_config=TINY_CONFIG, step_batch=2, step_crop=64, step_warmup=0,
        infer_config=TINY_CONFIG, infer_size=(150, 300), infer_stride=(85, 85),
        bench_config=TINY_CONFIG, bench_argv=["--size", "96", "--warmup", "0", "--repeats", "1"],
    ),
}
WINDOW_BATCHES = (1, 6)
#: Largest allowed error relative to each tensor's largest magnitude (max|ours - ref| / max|ref|).
SCAN_TOL = {"float32": 1e-3, "bfloat16": 2e-2}
COMPARE_TOL = {"outputs": 1e-3, "grads": 5e-3}
GRAD_FLOOR = 1e-3
#: Sliding-window agreement (window batch 1 vs 6, fp32): max abs difference relative to the largest score.
SLIDE_TOL_FP32 = 1e-3


@dataclass
class Context:
    """What a check gets: the device, the mode, a scratch folder and its time budget."""

    device: torch.device
    small: bool
    scratch: str
    budget_s: float = 60.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def sizes(self) -> dict:
        return SIZES["small" if self.small else "full"]

    def time_left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def log(self, msg: str) -> None:
        print(f"    {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ helpers
def _load_tool(name: str):
    """A script of tools/ as a module (its functions are reused, not copied)."""
    path = os.path.join(REPO_ROOT, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_gpu_kit_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rel_err(ours: torch.Tensor, ref: torch.Tensor, floor: float = 0.0) -> float:
    """max|ours - ref| / max(max|ref|, floor) in float32 on the CPU (the absolute difference when that is 0)."""
    o, r = ours.detach().float().cpu(), ref.detach().float().cpu()
    diff = (o - r).abs().max().item() if r.numel() else 0.0
    scale = max(r.abs().max().item() if r.numel() else 0.0, floor)
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else diff


@contextlib.contextmanager
def _strict_fp32():
    """Full fp32 matmuls and convolutions on CUDA (no TF32) while comparing against the CPU.

    Uses the ``allow_tf32`` flags; where the process already set TF32 through torch's newer ``fp32_precision``
    settings (reading the old flags then raises), those are set to "ieee" instead. Restored on exit.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        names, saved = ("allow_tf32", "allow_tf32"), (matmul.allow_tf32, cudnn.allow_tf32)
        strict = (False, False)
        targets = (matmul, cudnn)
    except RuntimeError:  # "mix of the legacy and new APIs": use the new one
        names, targets = ("fp32_precision", "fp32_precision"), (matmul, cudnn.conv)
        saved = tuple(t.fp32_precision for t in targets)
        strict = ("ieee", "ieee")
    for t, n, v in zip(targets, names, strict):
        setattr(t, n, v)
    try:
        yield
    finally:
        for t, n, v in zip(targets, names, saved):
            setattr(t, n, v)


def _build(config_file: str, device: torch.device, overrides=(), on_device: bool = True):
    """(cfg, model, notes, seconds) for ``config_file`` through the benchmark's loader and builder.

    With ``on_device`` the parameters are created on ``device`` directly (``torch.device`` as default device:
    initialising 0.7 G parameters on a GPU takes seconds, on the CPU much longer); if that fails the model is
    built on the CPU and moved, and the notes say so.
    """
    from mfuser.utils.benchmark.cli import build_model, load_model_config

    cfg = load_model_config(config_file, list(overrides))
    start = time.perf_counter()
    notes = []
    if on_device and device.type != "cpu":
        try:
            with device:
                model, notes = build_model(cfg, device)
            notes = notes + [f"parameters initialised on {device}"]
        except Exception as e:  # noqa: BLE001 - any failure: fall back to the ordinary CPU build
            notes = [f"building on {device} directly failed ({type(e).__name__}: {e}); built on the CPU and moved"]
            cfg = load_model_config(config_file, list(overrides))
            model, more = build_model(cfg, device)
            notes += more
    else:
        model, notes = build_model(cfg, device)
    _sync(device)
    return cfg, model, notes, time.perf_counter() - start


def benchmark_cli(ctx: Context, subcommand: str, config_file: str, extra: list[str]) -> dict:
    """``tools/benchmark.py SUBCOMMAND --config-file CONFIG --device DEVICE --json EXTRA`` in this process (its
    ``main``; the model is built by it); returns its JSON result. ``--threads`` is the worker's own thread count, and
    the thread count is restored afterwards (the benchmark sets it)."""
    import io

    from mfuser.utils import benchmark

    threads = torch.get_num_threads()
    argv = [subcommand, "--config-file", config_file, "--device", str(ctx.device), "--threads", str(threads),
            "--json", *extra]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = benchmark.main(argv)
    finally:
        torch.set_num_threads(threads)
    if err.getvalue().strip():
        ctx.log("benchmark stderr: " + " | ".join(err.getvalue().strip().splitlines()[-5:]))
    if code != 0:
        raise RuntimeError(f"tools/benchmark.py {' '.join(argv)} exited with {code}: "
                           + " | ".join(err.getvalue().strip().splitlines()[-3:]))
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _result(numbers: dict, failures: list[str]) -> dict:
    return {"passed": not failures, "numbers": numbers, "failures": failures}


# ------------------------------------------------------------------------------------------------ environment
def _version(module_name: str):
    try:
        module = __import__(module_name)
    except Exception as e:  # noqa: BLE001 - report, do not fail the check on an optional package
        return f"not importable ({type(e).__name__}: {e})"
    return getattr(module, "__version__", "unknown")


def check_environment(ctx: Context) -> dict:
    from mfuser.layers.selective_scan import _mamba_fn, kernel_available, select_backend

    dev = ctx.device
    numbers = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "selective_scan_kernel_built": kernel_available(),
        "mamba_ssm_importable": _mamba_fn() is not None,
        "scan_backend_cpu": select_backend("cpu"),
        "scan_backend_device": select_backend(dev),
        "packages": {m: _version(m) for m in ("detectron2", "timm", "open_clip", "fvcore", "iopath", "omegaconf",
                                              "hydra", "pycocotools", "numpy", "cv2", "mamba_ssm")},
        "detectron2_path": os.path.dirname(__import__("detectron2").__file__),
        "mfuser_path": os.path.dirname(__import__("mfuser").__file__),
        "pythonpath": [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p],
    }
    failures = []
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return _result(numbers, ["--device cuda but torch.cuda.is_available() is False"])
        props = torch.cuda.get_device_properties(dev)
        numbers.update(
            gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            gpu_multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    # the device computes: a small matmul against the CPU
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    with _strict_fp32():
        err = _rel_err((a.to(dev) @ b.to(dev)).cpu(), a @ b)
    numbers["matmul_rel_err"] = err
    if not err <= 1e-5:
        failures.append(f"a 64x64 fp32 matmul on {dev} differs from the CPU by {err:.3g} (relative)")
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ scan
def check_scan(ctx: Context) -> dict:
    """Every scan backend usable on the device vs the C++ CPU kernel (the sequential reference if not built)."""
    from mfuser.layers.selective_scan import _mamba_fn, kernel_available, selective_scan, selective_scan_ref

    bs = _load_tool("benchmark_scan")
    shape = ctx.sizes["scan_shape"]
    if shape is None:
        d = bs.parse_args([])
        shape = dict(batch=d.batch, dim=d.dim, length=d.length, state=d.state)
    dev, dev_s = ctx.device, str(ctx.device)
    inputs = bs.make_inputs(shape["batch"], shape["dim"], shape["length"], shape["state"], "cpu", seed=0)
    g = torch.Generator().manual_seed(1)
    grads = {"out": torch.randn(shape["batch"], shape["dim"], shape["length"], generator=g),
             "last_state": torch.randn(shape["batch"], shape["dim"], shape["state"], generator=g)}
    if kernel_available():
        ref_fn, ref_name = functools.partial(selective_scan, backend="kernel"), "mfuser C++ CPU kernel"
    else:
        ref_fn, ref_name = selective_scan_ref, "sequential selective_scan_ref on the CPU (mfuser._C not built)"
    backends = ["torch"]
    if dev.type == "cuda" and _mamba_fn() is not None:
        backends.insert(0, "mamba")
    numbers = {"shape": shape, "reference": ref_name, "backends": backends,
               "mamba_ssm_importable": _mamba_fn() is not None, "results": {}}
    failures = []
    for dtype in (torch.float32, torch.bfloat16):
        dname = str(dtype).replace("torch.", "")
        # u, delta, B, C and the output gradient in dtype; A, D, delta_bias stay fp32 (mamba_ssm's contract). The
        # reference gets the same (rounded) values in fp32.
        low = {k: (v.to(dtype) if k in ("u", "delta", "B", "C") else v) for k, v in inputs.items()}
        low_grads = {"out": grads["out"].to(dtype), "last_state": grads["last_state"]}
        ref_t, ref = bs.run_once(ref_fn, {k: v.float() for k, v in low.items()},
                                 {k: v.float() for k, v in low_grads.items()}, True, "cpu")
        numbers["results"][f"reference_{dname}_fwdbwd_ms"] = ref_t * 1e3
        dev_inputs = {k: v.to(dev) for k, v in low.items()}
        dev_grads = {k: v.to(dev) for k, v in low_grads.items()}
        for backend in backends:
            fn = functools.partial(selective_scan, backend=backend)
            bs.run_once(fn, dev_inputs, dev_grads, True, dev_s)  # warm-up
            t, res = bs.best_of(ctx.sizes["scan_repeats"], fn, dev_inputs, dev_grads, True, dev_s)
            errs = {k: _rel_err(res[k], ref[k]) for k in ref}
            worst = max(errs, key=errs.get)
            key = f"{backend}_{dname}"
            numbers["results"][key] = {"fwdbwd_ms": t * 1e3, "max_rel_err": errs[worst], "worst_tensor": worst,
                                       "out_rel_err": errs["out"], "rel_err": errs}
            if not errs[worst] <= SCAN_TOL[dname]:
                failures.append(f"{key}: {worst} differs from the reference by {errs[worst]:.3g} "
                                f"(relative; tolerance {SCAN_TOL[dname]})")
    numbers["tolerance"] = SCAN_TOL
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ tiny: device vs CPU
def _features_and_grads(model, images: torch.Tensor, weights: dict | None):
    """Outputs of ``forward_features`` and the gradients of ``sum_k <output_k, weights_k>`` w.r.t. the trainable
    parameters (weights drawn on the CPU on first use, so both devices use the same)."""
    model.zero_grad(set_to_none=True)
    outputs, dense, enhanced = model.forward_features(images, model.class_embeddings())
    outs = {"pred_logits": outputs["pred_logits"], "pred_masks": outputs["pred_masks"], "dense_embedding": dense,
            "enhanced_text": enhanced}
    if weights is None:
        g = torch.Generator().manual_seed(2)
        weights = {k: torch.randn(tuple(v.shape), generator=g) for k, v in outs.items()}
    loss = sum((v.float() * weights[k].to(v.device)).sum() for k, v in outs.items())
    loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    return {k: v.detach().cpu() for k, v in outs.items()}, grads, missing, weights


def _train_without_dropout(model: torch.nn.Module) -> int:
    """``model.train()`` with every dropout / drop-path module in eval mode (deterministic); returns their number."""
    model.train()
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) or type(m).__name__ == "DropPath":
            m.eval()
            n += 1
    return n


def check_tiny_device_vs_cpu(ctx: Context) -> dict:
    from mfuser.layers.selective_scan import select_backend

    s = ctx.sizes
    torch.manual_seed(0)
    _, model_cpu, _, _ = _build(TINY_CONFIG, torch.device("cpu"))
    model_dev = copy.deepcopy(model_cpu).to(ctx.device)
    # train mode (in eval mode the text tower's output is cached without gradients), dropout off on both
    disabled = _train_without_dropout(model_cpu)
    _train_without_dropout(model_dev)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s["compare_batch"], 3, s["compare_size"], s["compare_size"]), generator=g).float()
    with _strict_fp32():
        t0 = time.perf_counter()
        out_c, grads_c, missing_c, weights = _features_and_grads(model_cpu, images, None)
        t_cpu = time.perf_counter() - t0
        _sync(ctx.device)
        t0 = time.perf_counter()
        out_d, grads_d, missing_d, _ = _features_and_grads(model_dev, images.to(ctx.device), weights)
        _sync(ctx.device)
        t_dev = time.perf_counter() - t0
    out_err = {k: _rel_err(out_d[k], out_c[k]) for k in out_c}
    # Gradients relative to their tensor's scale, floored at GRAD_FLOOR x the largest gradient of the model: a bias
    # in front of a normalisation has a gradient that is exactly 0 in exact arithmetic, i.e. pure rounding noise.
    floor = GRAD_FLOOR * max((g.abs().max().item() for g in grads_c.values() if g.numel()), default=0.0)
    grad_err = {n: _rel_err(grads_d[n], grads_c[n], floor) for n in grads_c if n in grads_d}
    worst = max(grad_err, key=grad_err.get) if grad_err else None
    numbers = {
        "batch": s["compare_batch"], "size": s["compare_size"],
        "scan_backend_device": select_backend(ctx.device), "dropout_modules_disabled": disabled,
        "fwdbwd_s_cpu": t_cpu, "fwdbwd_s_device": t_dev,
        "outputs_rel_err": out_err,
        "grads_compared": len(grad_err),
        "grads_max_rel_err": grad_err[worst] if worst else None,
        "grads_worst_param": worst,
        "params_without_grad": sorted(set(missing_c) | set(missing_d)),
        "tolerance": COMPARE_TOL, "grad_scale_floor": floor,
    }
    failures = []
    for k, e in out_err.items():
        if not e <= COMPARE_TOL["outputs"]:
            failures.append(f"output {k}: device vs CPU relative error {e:.3g} > {COMPARE_TOL['outputs']}")
    if worst is None:
        failures.append("no trainable parameter received a gradient")
    elif not grad_err[worst] <= COMPARE_TOL["grads"]:
        failures.append(f"gradient of {worst}: device vs CPU relative error {grad_err[worst]:.3g} > "
                        f"{COMPARE_TOL['grads']}")
    if numbers["params_without_grad"]:
        failures.append(f"trainable parameters without a gradient: {numbers['params_without_grad'][:5]}")
    if set(grads_c) != set(grads_d):
        failures.append("the device and the CPU model give gradients to different parameters")
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ tiny training
class _TimeLimit(RuntimeError):
    pass


def check_tiny_train_bf16(ctx: Context) -> dict:
    """The quickstart's model, data pipeline, optimizer and schedule; MFuserAMPTrainer with bf16 autocast."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import HookBase, hooks

    from mfuser.data.synthetic import generate_domain
    from mfuser.engine.train_loop import MFuserAMPTrainer

    s = ctx.sizes
    iters = s["train_iters"]
    root = os.path.join(ctx.scratch, "synthetic")
    t0 = time.perf_counter()
    generate_domain(os.path.join(root, "source"), "source", s["train_images"], size=s["train_image_size"], seed=0)
    gen_s = time.perf_counter() - t0

    os.environ["MFUSER_SYNTHETIC_ROOT"] = root  # read by the quickstart config when it is loaded
    cfg = LazyConfig.load(QUICKSTART_CONFIG)
    crop = s["train_crop"]
    cfg.dataloader.train.mapper.augmentations.crop_size = (crop, crop)
    cfg.dataloader.train.total_batch_size = s["train_batch"]
    cfg.dataloader.train.num_workers = 0
    cfg.train.max_iter = iters
    cfg.lr_multiplier.warmup_iters = max(1, iters // 10)  # the quickstart's schedule, scaled to this run
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(ctx.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    trainer = MFuserAMPTrainer(model, loader, optimizer, precision="bf16", device_type=ctx.device.type)
    stop_at = time.perf_counter() + ctx.time_left() - 10.0

    class Deadline(HookBase):
        def after_step(self):
            if time.perf_counter() > stop_at:
                raise _TimeLimit(f"stopped after {self.trainer.iter + 1} of {iters} iterations: time budget spent")

    trainer.register_hooks([hooks.IterationTimer(), hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
                            Deadline()])
    t0 = time.perf_counter()
    error = None
    try:
        trainer.train(0, iters)
    except _TimeLimit as e:
        error = str(e)
    train_s = time.perf_counter() - t0
    losses = [float(v) for v, _ in trainer.storage.history("total_loss").values()]
    k = max(2, len(losses) // 5)
    first, last = (sum(losses[:k]) / k, sum(losses[-k:]) / k) if len(losses) >= 2 * k else (None, None)
    numbers = {
        "iterations": len(losses), "batch": s["train_batch"], "crop": crop, "images_generated": s["train_images"],
        "image_size_wh": list(s["train_image_size"]), "generate_s": gen_s, "train_s": train_s,
        "s_per_iter": train_s / max(1, len(losses)), "lr_warmup_iters": cfg.lr_multiplier.warmup_iters,
        "loss_first_mean": first, "loss_last_mean": last, "window": k, "losses": [round(v, 5) for v in losses],
    }
    failures = []
    if error:
        failures.append(error)
    if len(losses) < iters:
        failures.append(f"only {len(losses)} of {iters} iterations ran")
    if not all(math.isfinite(v) for v in losses):
        failures.append("a loss is not finite")
    if first is None or not last < first:
        failures.append(f"the loss did not go down: mean of the first {k} = {first}, of the last {k} = {last}")
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ EVA02 train step
def check_eva02_train_step(ctx: Context) -> dict:
    """``tools/benchmark.py train-step`` (bf16): one AdamW step without and with activation checkpointing."""
    s = ctx.sizes
    extra = ["--batch", str(s["step_batch"]), "--crop", str(s["step_crop"]), "--warmup", str(s["step_warmup"]),
             "--repeats", "1", "--amp", "bf16"]
    result = benchmark_cli(ctx, "train-step", s["step_config"], extra)
    numbers = {"command": f"tools/benchmark.py train-step --config-file {os.path.relpath(s['step_config'], REPO_ROOT)}"
                          f" --device {ctx.device} {' '.join(extra)}", **result}
    failures = []
    for mode in ("plain", "ckpt"):
        loss = result.get(f"loss_{mode}")
        if loss is None or not math.isfinite(loss):
            failures.append(f"loss with activation checkpointing {mode}: {loss}")
        if not (result.get(f"time_{mode}_s") or 0) > 0:
            failures.append(f"time_{mode}_s not measured")
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ EVA02 inference
def check_eva02_inference(ctx: Context) -> dict:
    """Whole-image and sliding-window inference (window batch 1 and 6) on one random image.

    Agreement of window batch 1 and 6 is checked in fp32 (TF32 off): the two must give the same scores up to
    rounding. Time and peak memory are measured under bf16 autocast (how MFuser runs on a GPU), after one warm-up
    run per mode (none with ``--small``); the bf16 differences are reported, not checked (in bf16 the batch size
    changes the kernels' rounding). Whole-image vs sliding-window label agreement is reported only: the two are
    different computations (one global context vs overlapping 512 windows).
    """
    from mfuser.modeling.meta_arch.mfuser import window_starts
    from mfuser.utils.benchmark.measure import PeakMemory, random_image, time_call, to_mb

    s = ctx.sizes
    torch.manual_seed(0)
    _, model, notes, build_s = _build(s["infer_config"], ctx.device)
    dev = ctx.device
    h, w = s["infer_size"]
    image = random_image((h, w), torch.Generator().manual_seed(0))
    inputs = [{"image": image, "height": h, "width": w}]
    saved = (model.inference_mode, model.window_batch_size, model.stride)
    b1, b6 = WINDOW_BATCHES
    modes = {"whole": ("whole", 1), f"slide_b{b1}": ("slide", b1), f"slide_b{b6}": ("slide", b6)}
    fp32, bf16, failures = {}, {}, []

    def infer(mode, batch):
        model.inference_mode, model.window_batch_size = mode, batch
        return model(inputs)[0]["sem_seg"]

    model.eval()
    try:
        if s["infer_stride"] is not None:  # small mode: a tiny image that still has several rows of windows
            model.stride = tuple(s["infer_stride"])
        numbers = {"config": os.path.relpath(s["infer_config"], REPO_ROOT), "model_build_s": build_s,
                   "model_notes": notes, "params_total": sum(p.numel() for p in model.parameters()),
                   "size": [h, w], "crop_size": list(model.crop_size), "stride": list(model.stride),
                   "timed_precision": "bf16", "agreement_precision": "fp32"}
        (ch, cw), (sh, sw) = model.crop_size, model.stride
        numbers["num_windows"] = len(window_starts(max(h, ch), ch, sh)) * len(window_starts(max(w, cw), cw, sw))
        with torch.no_grad():
            with _strict_fp32():
                for b in WINDOW_BATCHES:
                    fp32[b] = infer("slide", b).float().cpu()
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                for name, (mode, batch) in modes.items():
                    try:
                        if not ctx.small:
                            infer(mode, batch)  # warm-up (kernels, cuDNN / cuBLAS heuristics)
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                        with PeakMemory(dev) as mem:
                            t, out = time_call(functools.partial(infer, mode, batch), dev)
                    except Exception as e:  # noqa: BLE001 - the other modes still run
                        failures.append(f"{name}: {type(e).__name__}: {e}")
                        continue
                    bf16[name] = out.float().cpu()
                    numbers[f"time_{name}_s"] = t
                    numbers[f"peak_mem_{name}_mb"] = to_mb(mem.peak)
                    numbers["memory_method"] = mem.method
                    del out
    finally:
        model.inference_mode, model.window_batch_size, model.stride = saved
    scale = fp32[b1].abs().max().item()
    diff = (fp32[b1] - fp32[b6]).abs().max().item()
    numbers.update(fp32_slide_max_abs_diff=diff, fp32_score_scale=scale, fp32_tolerance_rel=SLIDE_TOL_FP32)
    if not diff <= SLIDE_TOL_FP32 * scale:
        failures.append(f"fp32, window batch {b1} vs {b6}: max abs difference {diff:.3g} > {SLIDE_TOL_FP32} x max "
                        f"score {scale:.3g}")
    a, b = bf16.get(f"slide_b{b1}"), bf16.get(f"slide_b{b6}")
    if a is not None and b is not None:
        d = (a - b).abs()
        numbers.update(bf16_slide_max_abs_diff=d.max().item(), bf16_slide_mean_abs_diff=d.mean().item(),
                       bf16_slide_label_agreement=(a.argmax(0) == b.argmax(0)).float().mean().item(),
                       slide_speedup=numbers[f"time_slide_b{b1}_s"] / numbers[f"time_slide_b{b6}_s"])
    if a is not None and "whole" in bf16:
        numbers["whole_vs_slide_label_agreement"] = (bf16["whole"].argmax(0) == a.argmax(0)).float().mean().item()
    outputs = {**{f"fp32_slide_b{k}": v for k, v in fp32.items()}, **{f"bf16_{k}": v for k, v in bf16.items()}}
    failures += [f"{k}: non-finite scores" for k, v in outputs.items() if not torch.isfinite(v).all()]
    failures += [f"{k}: output shape {tuple(v.shape)}, expected (K, {h}, {w})" for k, v in outputs.items()
                 if tuple(v.shape[-2:]) != (h, w)]
    return _result(numbers, failures)


# ------------------------------------------------------------------------------------------------ benchmark model
def check_benchmark_model(ctx: Context) -> dict:
    """``tools/benchmark.py model --device DEVICE`` with its default precision (bf16 autocast on CUDA)."""
    s = ctx.sizes
    failures = []
    extra = list(s["bench_argv"])
    try:
        result = benchmark_cli(ctx, "model", s["bench_config"], extra)
    except Exception as e:  # noqa: BLE001 - most likely fvcore's trace: keep the timings without FLOPs
        failures.append(f"with the FLOP count: {type(e).__name__}: {e}; the figures are from --no-flops")
        extra.append("--no-flops")
        result = benchmark_cli(ctx, "model", s["bench_config"], extra)
    numbers = {"command": f"tools/benchmark.py model --config-file {os.path.relpath(s['bench_config'], REPO_ROOT)} "
                          f"--device {ctx.device} {' '.join(extra)}", **result}
    for k in ("time_encoders_s", "time_full_s"):
        v = result.get(k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            failures.append(f"{k} = {v}")
    if result.get("text_cached") is False:
        failures.append(f"the text tower ran {result.get('text_tower_calls')} times for one vocabulary")
    return _result(numbers, failures)


CHECK_FUNCTIONS = {
    "environment": check_environment,
    "scan": check_scan,
    "tiny_device_vs_cpu": check_tiny_device_vs_cpu,
    "tiny_train_bf16": check_tiny_train_bf16,
    "eva02_train_step": check_eva02_train_step,
    "eva02_inference": check_eva02_inference,
    "benchmark_model": check_benchmark_model,
}
