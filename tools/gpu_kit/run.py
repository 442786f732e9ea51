#!/usr/bin/env python
"""GPU run kit: one command that checks and measures MFuser's CUDA path and writes a JSON report and a log.

    python tools/gpu_kit/run.py OUT_DIR [--device cuda|cpu] [--small] [--wheels DIR|none] [--no-build]
        [--checks NAME,NAME] [--threads N] [--time-limit SECONDS]

Steps (each recorded in ``OUT_DIR/report.json``, everything printed also in ``OUT_DIR/log.txt``):

1. install the wheels of ``--wheels`` (default: ``gpu_wheels/`` at the repository root, filled by
   ``tools/gpu_kit/gather_wheels.sh``, when it exists and this is Python 3.12) into a scratch folder with
   ``pip install --no-index --no-deps --target``, and detectron2's Python part (``detectron2-pypi.zip``) when no
   detectron2 is importable; the checks run with that folder and the repository first on ``PYTHONPATH``;
2. build mfuser's C++ CPU selective-scan kernel in place (``setup.py build_ext --inplace``) unless it is already
   built for this interpreter and newer than its sources, or ``--no-build`` is given (the reason is recorded);
3. run the checks of ``plan.CHECKS`` in a worker process (``worker.py``); each has a time budget, and the whole run
   a time limit (``--time-limit``, default 450 s: the 8 minutes the kit must fit in on one H200-class GPU). A check
   that raises, crashes the worker or outlasts its budget is recorded as failed and a fresh worker runs the
   remaining ones; checks not started before the time limit are recorded as skipped.

``report.json`` is rewritten after every step, so a run cut short still leaves what it measured. Exit status: 0
when every check passed, 1 otherwise, 2 for a usage error. What each check measures: docs/gpu.md.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import glob
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from plan import (  # noqa: E402
    BUILD_BUDGET_S,
    CHECKS,
    DEFAULT_TIME_LIMIT_S,
    DEFAULT_WHEEL_DIR,
    INSTALL_BUDGET_S,
    REPO_ROOT,
    WHEELS_PYTHON,
    WORKER_START_BUDGET_S,
    check_names,
)

if REPO_ROOT not in sys.path:
    sys.path.insert(1, REPO_ROOT)
from mfuser.utils.cli import UsageError, add_debug_argument, guarded_main  # noqa: E402 - standard library only
from mfuser.utils.io import atomic_write_json  # noqa: E402 - standard library only

#: detectron2's Python part as gather_wheels.sh packs it (its wheel is tagged for CPython 3.10 only).
D2_ARCHIVE = "detectron2-pypi.zip"
WORKER = os.path.join(HERE, "worker.py")
POLL_S = 0.2
EXIT_RESTART = 3  # worker.py: a check raised on CUDA; start a fresh worker for the remaining checks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="What each check measures and how to run the kit: docs/gpu.md.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for report.json and log.txt (created if needed)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default) or cpu (the dry run: device-vs-CPU comparisons compare the CPU with itself)")
    p.add_argument("--small", action="store_true",
                   help="the tiny model instead of the full-size EVA02 one, smaller sizes and fewer iterations")
    p.add_argument("--wheels", default=None, metavar="DIR|none",
                   help="wheel folder to install from (default: gpu_wheels/ at the repository root if it exists and "
                        "this is the Python it was gathered for, 3.12); 'none': use the interpreter's packages only")
    p.add_argument("--no-build", action="store_true", help="never compile the C++ CPU kernel (use it if built)")
    p.add_argument("--checks", default=None, metavar="NAME,NAME",
                   help=f"run only these checks, in plan order (default: all of {','.join(check_names())})")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of the checks (torch.set_num_threads; default: 1 with --device cpu, where other "
                        "work may share the cores, else torch's default)")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, metavar="SECONDS",
                   help=f"wall time of the whole run, installs included (default {DEFAULT_TIME_LIMIT_S})")
    add_debug_argument(p)
    return p


def resolve_args(args) -> None:
    if args.checks is None:
        args.checks = check_names()
    else:
        wanted = [c.strip() for c in args.checks.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in check_names()]
        if unknown or not wanted:
            raise UsageError(f"--checks: unknown check(s) {unknown or wanted}; known: {', '.join(check_names())}")
        args.checks = [c for c in check_names() if c in wanted]
    args.wheels_note = None
    if args.wheels is None:
        args.wheels = DEFAULT_WHEEL_DIR if os.path.isdir(DEFAULT_WHEEL_DIR) else None
        if args.wheels and sys.version_info[:2] != WHEELS_PYTHON:
            args.wheels_note = (f"{os.path.relpath(DEFAULT_WHEEL_DIR, REPO_ROOT)}/ holds wheels for Python "
                                f"{'.'.join(map(str, WHEELS_PYTHON))} and this is {sys.version.split()[0]}: not used "
                                "(pass --wheels DIR to install them anyway)")
            args.wheels = None
    elif args.wheels.lower() == "none":
        args.wheels = None
    elif not os.path.isdir(args.wheels):
        raise UsageError(f"--wheels {args.wheels}: no such folder (fill it with tools/gpu_kit/gather_wheels.sh, "
                         "or pass --wheels none)")
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if not args.time_limit > 0:
        raise UsageError(f"--time-limit must be positive, got {args.time_limit}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UsageError(f"OUT_DIR {args.out_dir} exists and is not a folder")


# ------------------------------------------------------------------------------------------------ log and report
class Log:
    """Lines with the time since the start, to OUT_DIR/log.txt and stdout (thread-safe, flushed per line)."""

    def __init__(self, path: str, t0: float):
        self.t0 = t0
        self.lock = threading.Lock()
        self.file = open(path, "w", encoding="utf-8")

    def __call__(self, msg: str, stamp: bool = True) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}" if stamp else msg
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()
            print(line, flush=True)

    def close(self) -> None:
        self.file.close()


def _tail(text: str, n: int = 20) -> list[str]:
    return text.strip().splitlines()[-n:]


def run_command(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in its own process group, which is killed whole on timeout (compilers started by
    ``setup.py`` included); raises ``subprocess.TimeoutExpired`` then."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                          **kwargs) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


# ------------------------------------------------------------------------------------------------ setup steps
def install_wheels(wheel_dir: str | None, site: str, timeout: float, note: str | None = None) -> dict:
    """``pip install --no-index --no-deps --target site`` of every wheel in ``wheel_dir``, then detectron2's Python
    part when no detectron2 is importable. Returns the step's record (``note``: why no folder is used)."""
    if wheel_dir is None:
        return {"status": "skip", "seconds": 0.0,
                "detail": note or "no wheel folder: the interpreter's own packages are used"}
    start = time.monotonic()
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "*.whl")))
    record = {"wheel_dir": os.path.abspath(wheel_dir), "wheels": [os.path.basename(w) for w in wheels]}
    if wheels:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--target", site, *wheels]
        try:
            proc = run_command(cmd, timeout)
        except subprocess.TimeoutExpired:
            return {**record, "status": "fail", "seconds": time.monotonic() - start,
                    "error": f"pip install did not finish within {timeout:.0f} s"}
        if proc.returncode != 0:
            return {**record, "status": "fail", "seconds": time.monotonic() - start,
                    "error": f"pip install exited with {proc.returncode}", "output": _tail(proc.stdout)}
    os.makedirs(site, exist_ok=True)
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    archive = os.path.join(wheel_dir, D2_ARCHIVE)
    if importlib.util.find_spec("detectron2") is not None:
        record["detectron2"] = f"importable from {os.path.dirname(importlib.util.find_spec('detectron2').origin)}"
    elif os.path.isfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(site)
        record["detectron2"] = f"Python part unpacked from {D2_ARCHIVE}"
    else:
        record["detectron2"] = f"not importable and no {D2_ARCHIVE} in the wheel folder"
    return {**record, "status": "pass", "seconds": time.monotonic() - start, "site": site}


def kernel_state() -> tuple[bool, bool, str]:
    """(mfuser's compiled kernel for this interpreter exists, it is newer than its sources, a sentence saying so)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    so = os.path.join(REPO_ROOT, "mfuser", "_C" + suffix)
    csrc = os.path.join(REPO_ROOT, "mfuser", "layers", "csrc")
    sources = [p for ext in ("cpp", "h") for p in glob.glob(os.path.join(csrc, "**", f"*.{ext}"), recursive=True)]
    if not os.path.exists(so):
        return False, False, f"mfuser/_C{suffix} is not built"
    if os.path.getmtime(so) < max((os.path.getmtime(p) for p in sources), default=0.0):
        return True, False, f"mfuser/_C{suffix} is older than its sources"
    return True, True, f"mfuser/_C{suffix} is built and newer than its sources"


def build_kernel(env: dict, no_build: bool, timeout: float) -> dict:
    """``python setup.py build_ext --inplace`` unless the kernel is up to date or ``no_build``; the step's record."""
    _, up_to_date, why = kernel_state()
    if up_to_date:
        return {"status": "skip", "seconds": 0.0, "detail": f"not needed: {why}"}
    if no_build:
        return {"status": "skip", "seconds": 0.0, "detail": f"--no-build ({why}); the checks use what is importable"}
    if timeout < 10:
        return {"status": "skip", "seconds": 0.0, "detail": f"no time left to build ({why})"}
    start = time.monotonic()
    cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
    try:
        proc = run_command(cmd, timeout, cwd=REPO_ROOT, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "fail", "seconds": time.monotonic() - start,
                "error": f"`python setup.py build_ext --inplace` did not finish within {timeout:.0f} s ({why})"}
    built, _, after = kernel_state()
    if proc.returncode != 0 or not built:
        return {"status": "fail", "seconds": time.monotonic() - start, "output": _tail(proc.stdout),
                "error": f"`python setup.py build_ext --inplace` exited with {proc.returncode} ({after}); the checks "
                         "use what is importable (the sequential reference when no kernel is)"}
    return {"status": "pass", "seconds": time.monotonic() - start, "detail": f"built in place (before: {why})"}


def worker_env(site: str | None) -> dict:
    env = dict(os.environ)
    paths = ([site] if site else []) + [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # the kit downloads nothing (a GPU machine may have no network: no retry loops)
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


# ------------------------------------------------------------------------------------------------ the worker
class Supervisor:
    """Runs the checks in worker processes, enforces their budgets, records every result in the report."""

    def __init__(self, args, env: dict, scratch: str, log: Log, report: dict, save, deadline: float,
                 budgets: dict | None = None, worker: str = WORKER):
        """``args``: the parsed command line; ``report["checks"]`` / ``report["workers"]``: updated in place and
        written by ``save()``; ``deadline``: ``time.monotonic()`` at which the run's time limit ends; ``budgets``
        (name -> seconds) and ``worker`` (the script run with ``sys.executable``) default to plan.CHECKS and
        worker.py."""
        self.args, self.env, self.scratch, self.log, self.report, self.save = args, env, scratch, log, report, save
        self.deadline = deadline
        self.budgets = budgets or {c.name: c.budget(args.small) for c in CHECKS}
        self.worker = worker
        self.entries = {e["name"]: e for e in report["checks"]}
        self.results = os.path.join(scratch, "events.jsonl")
        self.workers = report["workers"]

    def record(self, name: str, **fields) -> None:
        self.entries[name].update(fields)
        self.save()
        if fields.get("status") in ("pass", "fail", "skip"):
            e = self.entries[name]
            extra = f": {e['error']}" if e.get("error") else ""
            self.log(f"{name}: {e['status']} ({e.get('seconds') or 0:.1f} s){extra}")

    def run(self) -> None:
        remaining = list(self.args.checks)
        while remaining:
            left = self.deadline - time.monotonic()
            if left < 5:
                for name in remaining:
                    self.record(name, status="skip", seconds=0.0,
                                error=f"not started: the run's time limit ({self.args.time_limit:.0f} s) was reached")
                return
            remaining = self.run_worker(remaining, left)

    def _read_events(self, offset: int) -> tuple[list[dict], int]:
        if not os.path.exists(self.results):
            return [], offset
        with open(self.results, encoding="utf-8") as f:
            f.seek(offset)
            data = f.read()
        lines = data.split("\n")
        complete, rest = lines[:-1], lines[-1]  # a line being written has no newline yet
        return [json.loads(x) for x in complete if x.strip()], offset + len(data.encode("utf-8")) - len(
            rest.encode("utf-8"))

    def run_worker(self, remaining: list[str], left: float) -> list[str]:
        cmd = [sys.executable, self.worker, "--device", self.args.device, "--results", self.results, "--scratch",
               self.scratch, "--checks", ",".join(remaining), "--time-left", f"{left:.1f}"]
        if self.args.small:
            cmd.append("--small")
        if self.args.threads:
            cmd += ["--threads", str(self.args.threads)]
        offset = os.path.getsize(self.results) if os.path.exists(self.results) else 0
        self.log(f"starting a worker for: {', '.join(remaining)}")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        tail = collections.deque(maxlen=40)

        def pump():
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log(f"  | {line}", stamp=False)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        worker = {"pid": proc.pid, "checks": list(remaining), "import_s": None, "exit_code": None}
        self.workers.append(worker)
        started = time.monotonic()
        state = {"ready": False, "current": None, "current_start": 0.0, "current_budget": 0.0}

        def handle(events):
            nonlocal remaining
            for ev in events:
                if ev["event"] == "ready":
                    state["ready"] = True
                    worker["import_s"] = ev.get("import_s")
                    worker["import_error"] = ev.get("import_error")
                    self.save()
                elif ev["event"] == "start":
                    name, now = ev["name"], time.monotonic()
                    budget = min(self.budgets[name], self.deadline - now)
                    state.update(current=name, current_start=now, current_budget=budget)
                    self.record(name, status="running", budget_s=round(budget, 1))
                elif ev["event"] == "end":
                    fields = {k: ev[k] for k in ("status", "seconds", "numbers", "failures", "error", "traceback")
                              if k in ev}
                    self.record(ev["name"], **fields)
                    remaining = [n for n in remaining if n != ev["name"]]
                    state["current"] = None

        killed_for = None
        try:
            killed_for = self._watch(proc, handle, state, started, offset)
        except BaseException:  # Ctrl-C or a bug here: never leave the worker (its own session) running
            self._kill(proc)
            raise
        code = proc.wait()
        reader.join(timeout=5)
        events, _ = self._read_events(state["offset"])  # what it wrote just before it ended
        handle(events)
        worker["exit_code"] = code
        worker["seconds"] = time.monotonic() - started
        self.save()
        out_tail = list(tail)[-15:]
        current = state["current"]
        if current is not None:  # ended (or was stopped) during a check
            error = killed_for or f"the worker process ended with exit status {code} during this check"
            self.record(current, status="fail", seconds=time.monotonic() - state["current_start"], error=error,
                        traceback=out_tail)
            remaining = [n for n in remaining if n != current]
            return remaining if state["ready"] else []
        if remaining and (code != EXIT_RESTART or not state["ready"]):
            error = killed_for or f"the worker process ended with exit status {code} before running this check"
            for name in remaining:
                self.record(name, status="fail", seconds=0.0, error=error, traceback=out_tail)
            return []
        return remaining

    def _watch(self, proc, handle, state: dict, started: float, offset: int) -> str | None:
        """Poll the worker's events until it ends; stop it when it overruns. Returns why it was stopped, or None."""
        state["offset"] = offset
        while proc.poll() is None:
            events, state["offset"] = self._read_events(state["offset"])
            handle(events)
            now = time.monotonic()
            current = state["current"]
            killed_for = None
            if not state["ready"] and (now - started > WORKER_START_BUDGET_S or now > self.deadline):
                killed_for = f"the worker did not import torch / detectron2 / mfuser within {now - started:.0f} s"
            elif current is not None and now - state["current_start"] > state["current_budget"]:
                limit = "its budget" if state["current_budget"] >= self.budgets[current] else "the run's time limit"
                killed_for = (f"timed out after {now - state['current_start']:.0f} s "
                              f"({limit}: {state['current_budget']:.0f} s)")
            if killed_for is not None:
                self._kill(proc)
                return killed_for
            time.sleep(POLL_S)
        return None

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group (start_new_session)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------------------ main
def summarize(report: dict) -> dict:
    statuses = [c["status"] for c in report["checks"]]
    return {"passed": statuses.count("pass"), "failed": statuses.count("fail"), "skipped": statuses.count("skip"),
            "all_passed": all(s == "pass" for s in statuses)}


@guarded_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    resolve_args(args)
    t0 = time.monotonic()
    deadline = t0 + args.time_limit
    os.makedirs(args.out_dir, exist_ok=True)
    report_path = os.path.join(args.out_dir, "report.json")
    log = Log(os.path.join(args.out_dir, "log.txt"), t0)
    report = {
        "kit": "mfuser GPU run kit (tools/gpu_kit/run.py)",
        "command": [os.path.relpath(__file__, REPO_ROOT), *(sys.argv[1:] if argv is None else list(argv))],
        "device": args.device,
        "small": args.small,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "time_limit_s": args.time_limit,
        "threads": args.threads,
        "python": sys.version.split()[0],
        "setup": {},
        "workers": [],
        "checks": [{"name": c.name, "what": c.what, "status": "pending", "seconds": None, "budget_s": None,
                    "numbers": {}, "failures": [], "error": None} for c in CHECKS if c.name in args.checks],
    }

    def save():
        report["wall_s"] = round(time.monotonic() - t0, 1)
        report["summary"] = summarize(report)
        atomic_write_json(report_path, report, indent=1)

    scratch = tempfile.mkdtemp(prefix="mfuser-gpu-kit-")
    try:
        save()
        log(f"GPU run kit: device {args.device}{' (small)' if args.small else ''}, checks {', '.join(args.checks)}, "
            f"time limit {args.time_limit:.0f} s; report: {report_path}")
        site = os.path.join(scratch, "site")
        step = install_wheels(args.wheels, site, min(INSTALL_BUDGET_S, max(1.0, deadline - time.monotonic())),
                              args.wheels_note)
        report["setup"]["install_wheels"] = step
        log(f"install wheels: {step['status']} ({step['seconds']:.1f} s) "
            f"{step.get('detail') or step.get('error') or step.get('detectron2', '')}")
        save()
        env = worker_env(site if step["status"] == "pass" else None)
        step = build_kernel(env, args.no_build, min(BUILD_BUDGET_S, deadline - time.monotonic() - 60))
        report["setup"]["build_kernel"] = step
        log(f"build C++ kernel: {step['status']} ({step['seconds']:.1f} s) {step.get('detail') or step.get('error')}")
        save()
        Supervisor(args, env, scratch, log, report, save, deadline).run()
        save()
        s = report["summary"]
        log(f"done in {report['wall_s']:.0f} s: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped; "
            f"report: {report_path}")
        return 0 if s["all_passed"] else 1
    finally:
        save()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
