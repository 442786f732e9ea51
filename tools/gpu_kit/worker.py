"""Runs checks of the GPU run kit one after the other in this process (started and watched by ``run.py``).

Events are appended to ``--results`` as JSON lines, each flushed and synced at once, so that ``run.py`` sees how far
the worker got even when it has to kill it:

* ``{"event": "ready", "import_s"}`` once torch, detectron2 and mfuser are imported;
* ``{"event": "start", "name", "budget_s"}`` before a check;
* ``{"event": "end", "name", "status": "pass" | "fail" | "skip", "seconds", "numbers", "failures", "error",
  "traceback"}`` after it.

Exit status 0 when every requested check ran; 3 when a check raised a CUDA error (:func:`cuda_error`), so that
``run.py`` starts a fresh process (a CUDA error can leave the context unusable) for the checks that remain.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import threading
import time
import traceback

T_START = time.monotonic()
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

EXIT_RESTART = 3


def jsonable(x):
    """``x`` with tuples as lists, non-finite floats as strings ("nan", "inf") and other objects as numbers or str."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    try:
        return jsonable(float(x))
    except (TypeError, ValueError):
        return str(x)


class Events:
    def __init__(self, path: str):
        self.path = path

    def emit(self, **event) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable(event)) + "\n")
            f.flush()
            os.fsync(f.fileno())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="run GPU-kit checks in one process (started by run.py)")
    p.add_argument("--device", required=True, choices=("cuda", "cpu"))
    p.add_argument("--small", action="store_true")
    p.add_argument("--results", required=True, help="JSON-lines file the events are appended to")
    p.add_argument("--scratch", required=True, help="folder for generated data")
    p.add_argument("--checks", required=True, help="comma-separated check names, in order")
    p.add_argument("--time-left", type=float, required=True, help="seconds left of the whole run at start")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    return p.parse_args(argv)


def cuda_error(e: BaseException) -> bool:
    """Whether ``e`` comes from CUDA (or its libraries): the context may be unusable, so a fresh process should run
    the remaining checks. Other errors (a missing package, a bug in one check) leave the process fine."""
    import torch

    text = f"{type(e).__name__}: {e}"
    return isinstance(e, torch.cuda.OutOfMemoryError) or any(
        s in text for s in ("CUDA", "CUBLAS", "cuBLAS", "CUDNN", "cuDNN", "NCCL", "device-side assert"))


def exit_with_parent(interval: float = 1.0) -> None:
    """End this process when run.py ends: the worker runs in its own session (so that run.py can stop it and its
    children as a group), so nothing else would stop it if run.py were killed, and it would keep the GPU busy."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(4)

    threading.Thread(target=watch, daemon=True).start()


def main(argv=None) -> int:
    args = parse_args(argv)
    exit_with_parent()
    events = Events(args.results)
    deadline = T_START + args.time_left
    import checks as C
    import torch
    from plan import CHECKS

    budgets = {c.name: c.budget(args.small) for c in CHECKS}
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    import_error = None
    try:  # the libraries every check needs, imported before the first check so that no check's time includes them
        import detectron2.config  # noqa: F401

        import mfuser.data  # noqa: F401
        import mfuser.modeling  # noqa: F401
    except Exception as e:  # noqa: BLE001 - reported; each check then fails with its own import error
        import_error = f"{type(e).__name__}: {e}"
        print(traceback.format_exc(), flush=True)
    events.emit(event="ready", import_s=time.monotonic() - T_START, pid=os.getpid(), import_error=import_error)
    for name in args.checks.split(","):
        left = deadline - time.monotonic()
        if left < 5:
            events.emit(event="end", name=name, status="skip", seconds=0.0,
                        error=f"not started: the run's time limit was reached ({left:.0f} s left)")
            continue
        budget = min(budgets[name], left)
        events.emit(event="start", name=name, budget_s=budget)
        print(f"--- {name} (budget {budget:.0f} s)", flush=True)
        ctx = C.Context(device=device, small=args.small, scratch=args.scratch, budget_s=budget)
        t0 = time.perf_counter()
        try:
            out = C.CHECK_FUNCTIONS[name](ctx)
        except Exception as e:  # noqa: BLE001 - one failing check must not stop the others
            seconds = time.perf_counter() - t0
            tb = traceback.format_exc()
            print(tb, flush=True)
            events.emit(event="end", name=name, status="fail", seconds=seconds, numbers={}, failures=[],
                        error=f"{type(e).__name__}: {e}", traceback=tb.splitlines()[-25:])
            if device.type == "cuda" and cuda_error(e):
                return EXIT_RESTART
            gc.collect()
            continue
        seconds = time.perf_counter() - t0
        status = "pass" if out["passed"] else "fail"
        events.emit(event="end", name=name, status=status, seconds=seconds, numbers=out["numbers"],
                    failures=out["failures"], error="; ".join(out["failures"]) or None)
        why = f": {'; '.join(out['failures'])}" if out["failures"] else ""
        print(f"--- {name}: {status} in {seconds:.1f} s{why}", flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # every event is already on disk: skip the interpreter's teardown (seconds with torch loaded)
