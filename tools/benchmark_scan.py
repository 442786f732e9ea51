#!/usr/bin/env python
"""Benchmark mfuser's selective scan against the plain sequential reference, in one process.

Times ``mfuser.layers.selective_scan.selective_scan_ref`` (one Python step per position) and
``mfuser.layers.selective_scan`` (whichever backend it dispatches to; see ``select_backend``) at MFuser's
fusion shape (batch 2, dim 512, L 2594, N 16, fp32, ``delta_softplus`` with ``delta_bias``, D, no z), forward
alone (no autograd) and forward + backward (gradients of every input), and reports their errors.

Errors compare our result with the reference on the output, the last state and the gradients of u, delta, A,
B, C, D and delta_bias: ``max_abs_err`` is the largest absolute difference over all of them; ``max_rel_err`` is
the largest, over those tensors, of max|ours - ref| / max|ref| (error relative to the tensor's scale).
``peak_mem_mb``: on CUDA the peak allocated memory of our forward + backward; on CPU the growth of the
process's peak resident set during our forward + backward, measured before the reference runs (inputs
excluded).

``--dtype bf16``: u, delta, B and C in bfloat16 (what the MVFuser gives the scan under CPU bf16 autocast; the
kernel reads them as stored and keeps its state in float32), the reference on float32 copies of the same
values; the errors then include the bf16 rounding of the output and of the bf16 inputs' gradients.

Example::

    python tools/benchmark_scan.py --threads 1
    python tools/benchmark_scan.py --threads 1 --dtype bf16
    python tools/benchmark_scan.py --length 257 --dim 16 --json
"""
import argparse
import json
import math
import resource
import sys
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    p.add_argument("--dim", type=int, default=512, help="channels, d_inner / 2 of MVFuser(1024) (default 512)")
    p.add_argument("--length", type=int, default=2594, help="sequence length, 2 x 1297 for EVA (default 2594)")
    p.add_argument("--state", type=int, default=16, help="state size N (default 16)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of ours; the minimum is reported (default 3)")
    p.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the reference (default 1)")
    p.add_argument("--backend", default="auto", choices=["auto", "mamba", "kernel", "torch"],
                   help="backend of ours, as selective_scan(backend=...) (default auto)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="dtype of u, delta, B, C given to ours (default fp32); the reference computes in float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    for name in ("batch", "dim", "length", "state", "threads", "repeats", "ref_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        p.error(f"--device must be cpu or cuda[:i], got {args.device!r}")
    return args


def make_inputs(batch, dim, length, state, device, seed):
    """Inputs distributed like MVFuser's at init: S4D-real A, dt ~ logU[1e-3, 1e-1] through delta_bias."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    dt0 = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    inputs = {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length, scale=0.5),
        "A": -torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1).to(device),
        "B": rnd(batch, state, length),
        "C": rnd(batch, state, length),
        "D": torch.ones(dim, device=device),
        "delta_bias": (dt0 + torch.log(-torch.expm1(-dt0))).to(device),
    }
    return inputs


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


STREAMED = ("u", "delta", "B", "C")  # the inputs --dtype applies to


def _call(fn, inputs, need_grad):
    args = {k: v.detach().clone().requires_grad_(need_grad) for k, v in inputs.items()}
    out, last = fn(args["u"], args["delta"], args["A"], args["B"], args["C"], D=args["D"],
                   delta_bias=args["delta_bias"], delta_softplus=True, return_last_state=True)
    return args, out, last


def run_once(fn, inputs, grads, backward, device):
    """Returns (seconds, {name: tensor}) for one forward (no autograd) or forward + backward."""
    _sync(device)
    t0 = time.perf_counter()
    if not backward:
        with torch.no_grad():
            _, out, last = _call(fn, inputs, False)
        _sync(device)
        return time.perf_counter() - t0, {"out": out, "last_state": last}
    args, out, last = _call(fn, inputs, True)
    torch.autograd.backward([out, last], [grads["out"].to(out.dtype), grads["last_state"].to(last.dtype)])
    _sync(device)
    dt = time.perf_counter() - t0
    res = {"out": out.detach(), "last_state": last.detach()}
    res.update({f"d{k}": v.grad for k, v in args.items()})
    return dt, res


def best_of(n, fn, inputs, grads, backward, device):
    times, res = [], None
    for _ in range(n):
        t, res = run_once(fn, inputs, grads, backward, device)
        times.append(t)
    return min(times), res


def compare(ours, ref):
    max_abs, max_rel = 0.0, 0.0
    for k, r in ref.items():
        o = ours[k].to(r.dtype)
        diff = (o - r).abs().max().item()
        scale = r.abs().max().item()
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return max_abs, max_rel


def benchmark(args):
    import functools

    from mfuser.layers.selective_scan import select_backend, selective_scan_ref
    from mfuser.layers.selective_scan import selective_scan as _scan

    selective_scan = functools.partial(_scan, backend=args.backend)

    torch.set_num_threads(args.threads)
    dev = args.device
    ref_inputs = make_inputs(args.batch, args.dim, args.length, args.state, dev, args.seed)
    inputs = dict(ref_inputs)
    if args.dtype == "bf16":  # ours on bf16 inputs, the reference on float32 copies of the same values
        inputs.update({k: ref_inputs[k].bfloat16() for k in STREAMED})
        ref_inputs.update({k: inputs[k].float() for k in STREAMED})
    g = torch.Generator().manual_seed(args.seed + 1)
    grads = {
        "out": torch.randn(args.batch, args.dim, args.length, generator=g).to(dev),
        "last_state": torch.randn(args.batch, args.dim, args.state, generator=g).to(dev),
    }
    # ours first (warm-up, then peak memory, then timings), so that the reference's memory does not mask ours
    run_once(selective_scan, _small(inputs), _small_grads(grads), True, dev)
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, ours_bwd = run_once(selective_scan, inputs, grads, True, dev)
    if dev.startswith("cuda"):
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # ru_maxrss is KiB on Linux
    ours_fwd_s, ours_fwd = best_of(args.repeats, selective_scan, inputs, grads, False, dev)
    ours_fb_s, ours_bwd = best_of(args.repeats, selective_scan, inputs, grads, True, dev)
    ref_fwd_s, ref_fwd = best_of(args.ref_repeats, selective_scan_ref, ref_inputs, grads, False, dev)
    ref_fb_s, ref_bwd = best_of(args.ref_repeats, selective_scan_ref, ref_inputs, grads, True, dev)
    abs_f, rel_f = compare(ours_fwd, ref_fwd)
    abs_b, rel_b = compare(ours_bwd, ref_bwd)
    return {
        "shape": {"batch": args.batch, "dim": args.dim, "length": args.length, "state": args.state,
                  "dtype": {"fp32": "float32", "bf16": "bfloat16"}[args.dtype], "device": dev, "threads": args.threads},
        "backend": select_backend(dev) if args.backend == "auto" else args.backend,
        "ref_fwd_ms": ref_fwd_s * 1e3,
        "ours_fwd_ms": ours_fwd_s * 1e3,
        "fwd_speedup": ref_fwd_s / ours_fwd_s,
        "ref_fwdbwd_ms": ref_fb_s * 1e3,
        "ours_fwdbwd_ms": ours_fb_s * 1e3,
        "fwdbwd_speedup": ref_fb_s / ours_fb_s,
        "max_abs_err": max(abs_f, abs_b),
        "max_rel_err": max(rel_f, rel_b),
        "peak_mem_mb": max(0.0, peak_mb),
    }


def _small(inputs):
    return {k: (v[..., :8] if v.dim() == 3 else v) for k, v in inputs.items()}


def _small_grads(grads):
    return {"out": grads["out"][..., :8], "last_state": grads["last_state"]}


def format_table(r):
    s = r["shape"]
    lines = [
        f"selective scan, batch {s['batch']}, dim {s['dim']}, L {s['length']}, N {s['state']}, {s['dtype']}, "
        f"{s['device']}, {s['threads']} thread(s); ours = {r['backend']}",
        f"{'':18}{'reference ms':>14}{'ours ms':>12}{'speedup':>10}",
        f"{'forward':18}{r['ref_fwd_ms']:>14.1f}{r['ours_fwd_ms']:>12.1f}{r['fwd_speedup']:>9.1f}x",
        f"{'forward+backward':18}{r['ref_fwdbwd_ms']:>14.1f}{r['ours_fwdbwd_ms']:>12.1f}{r['fwdbwd_speedup']:>9.1f}x",
        f"max abs err {r['max_abs_err']:.3g}, max rel err {r['max_rel_err']:.3g} "
        "(outputs, last state and all input gradients)",
        f"peak memory of ours (forward+backward): {r['peak_mem_mb']:.1f} MiB",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    result = benchmark(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
