"""tools/gpu_kit: the CPU dry run of the GPU run kit, its supervisor's fault handling, and the wheel script's usage."""
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
import zipfile

import pytest

from tests.conftest import REPO_ROOT

KIT = os.path.join(REPO_ROOT, "tools", "gpu_kit")
RUN = os.path.join(KIT, "run.py")
GATHER = os.path.join(KIT, "gather_wheels.sh")
CHECK_NAMES = ["environment", "scan", "tiny_device_vs_cpu", "tiny_train_bf16", "eva02_train_step", "eva02_inference",
               "benchmark_model"]
ENTRY_KEYS = {"name", "what", "status", "seconds", "budget_s", "numbers", "failures", "error"}


@pytest.fixture(scope="module")
def run_module():
    spec = importlib.util.spec_from_file_location("gpu_kit_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _probe_wheel(folder) -> str:
    """A minimal pure wheel (module ``gpu_kit_probe``), to exercise the kit's install step without the index."""
    path = os.path.join(folder, "gpu_kit_probe-0.1-py3-none-any.whl")
    info = "gpu_kit_probe-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("gpu_kit_probe.py", "VALUE = 17\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gpu_kit_probe\nVersion: 0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_cpu_dry_run(tmp_path):
    """`run.py OUT --device cpu --small`: every check passes and the report has one complete entry per check."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _probe_wheel(wheels)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, RUN, str(out), "--device", "cpu", "--small", "--wheels", str(wheels),
                           "--no-build"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    report = json.loads((out / "report.json").read_text())
    failed = {c["name"]: c["error"] for c in report["checks"] if c["status"] != "pass"}
    assert proc.returncode == 0, f"{failed}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    assert report["device"] == "cpu" and report["small"] is True
    assert report["summary"] == {"passed": len(CHECK_NAMES), "failed": 0, "skipped": 0, "all_passed": True}
    install = report["setup"]["install_wheels"]
    assert install["status"] == "pass" and install["wheels"] == ["gpu_kit_probe-0.1-py3-none-any.whl"]
    assert report["setup"]["build_kernel"]["status"] in ("skip", "pass")
    assert [c["name"] for c in report["checks"]] == CHECK_NAMES
    for c in report["checks"]:
        assert ENTRY_KEYS <= set(c), c["name"]
        assert c["status"] == "pass" and c["error"] is None and c["failures"] == [], c["name"]
        assert c["seconds"] > 0 and c["numbers"], c["name"]
    checks = {c["name"]: c["numbers"] for c in report["checks"]}
    # the checks run with the scratch install first on the path
    assert checks["environment"]["pythonpath"][0] == install["site"]
    assert {"torch_float32", "torch_bfloat16"} <= set(checks["scan"]["results"])
    assert checks["tiny_device_vs_cpu"]["grads_compared"] > 0
    train = checks["tiny_train_bf16"]
    assert train["iterations"] == len(train["losses"]) and train["loss_last_mean"] < train["loss_first_mean"]
    assert checks["eva02_inference"]["num_windows"] == 8 and checks["eva02_inference"]["time_slide_b6_s"] > 0
    assert checks["eva02_train_step"]["time_plain_s"] > 0 and checks["eva02_train_step"]["time_ckpt_s"] > 0
    assert checks["benchmark_model"]["flops_full"] > checks["benchmark_model"]["flops_encoders"] > 0
    log = (out / "log.txt").read_text()
    assert all(f"{name}: pass" in log for name in CHECK_NAMES)


FAKE_WORKER = r'''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
for a in ("--device", "--results", "--scratch", "--checks", "--time-left", "--threads"):
    p.add_argument(a)
p.add_argument("--small", action="store_true")
a = p.parse_args()
def emit(**e):
    with open(a.results, "a") as f:
        f.write(json.dumps(e) + "\n")
emit(event="ready", import_s=0.0)
for name in a.checks.split(","):
    emit(event="start", name=name, budget_s=1)
    if name == "hangs":
        time.sleep(60)
    if name == "crashes":
        os._exit(9)
    if name == "raises":
        emit(event="end", name=name, status="fail", seconds=0.1, error="RuntimeError: boom")
        sys.exit(3)
    emit(event="end", name=name, status="pass", seconds=0.1, numbers={"x": 1}, failures=[], error=None)
'''


def test_supervisor_survives_timeouts_crashes_and_errors(run_module, tmp_path):
    """A check that outlasts its budget is stopped, one that kills its worker or raises on CUDA is recorded, and a
    fresh worker runs the checks after it."""
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    names = ["first", "hangs", "second", "crashes", "raises", "third"]
    report = {"checks": [{"name": n, "status": "pending"} for n in names], "workers": []}
    args = types.SimpleNamespace(checks=names, device="cpu", small=True, threads=None, time_limit=60)
    lines = []
    log = lambda msg, stamp=True: lines.append(msg)  # noqa: E731
    start = time.monotonic()
    sup = run_module.Supervisor(args, dict(os.environ), str(tmp_path), log, report, lambda: None, start + 60,
                                budgets=dict.fromkeys(names, 1.0), worker=str(worker))
    sup.run()
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status == {"first": "pass", "hangs": "fail", "second": "pass", "crashes": "fail", "raises": "fail",
                      "third": "pass"}
    errors = {c["name"]: c.get("error") for c in report["checks"]}
    assert "timed out" in errors["hangs"]
    assert "exit status 9" in errors["crashes"]
    assert errors["raises"] == "RuntimeError: boom"
    assert len(report["workers"]) == 4  # restarted after the timeout, the crash and the CUDA-style error
    assert time.monotonic() - start < 30


def test_supervisor_skips_checks_past_the_time_limit(run_module, tmp_path):
    report = {"checks": [{"name": "late", "status": "pending"}], "workers": []}
    args = types.SimpleNamespace(checks=["late"], device="cpu", small=True, threads=None, time_limit=1)
    sup = run_module.Supervisor(args, dict(os.environ), str(tmp_path), lambda *a, **k: None, report, lambda: None,
                                time.monotonic() - 1)
    sup.run()
    assert report["checks"][0]["status"] == "skip" and "time limit" in report["checks"][0]["error"]
    assert report["workers"] == []


@pytest.mark.parametrize("argv, message", [
    (["--checks", "bogus"], "--checks: unknown check(s) ['bogus']"),
    (["--wheels", "/nonexistent/wheels"], "--wheels /nonexistent/wheels: no such folder"),
    (["--time-limit", "0"], "--time-limit must be positive"),
])
def test_run_usage_errors(tmp_path, argv, message):
    proc = subprocess.run([sys.executable, RUN, str(tmp_path / "out"), *argv], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _gather(*args):
    return subprocess.run(["bash", GATHER, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)


def test_gather_wheels_refuses_a_missing_dir():
    proc = _gather()
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: missing DIR")
    assert "usage: bash tools/gpu_kit/gather_wheels.sh DIR" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_gather_wheels_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _gather(str(tmp_path))
    assert proc.returncode == 2 and "is not a wheel folder made by this script" in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
