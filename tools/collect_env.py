#!/usr/bin/env python
"""Print the environment facts a bug report needs: versions, CUDA, and which selective-scan backend runs.

Usage: python tools/collect_env.py
"""
import argparse
import importlib
import os
import platform
import sys


def _version(module_name):
    """Return ``(version, path)`` of an importable module, or ``("not installed: <reason>", "")``."""
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is a fact to report, not a crash
        return f"not installed ({type(e).__name__}: {e})", ""
    return getattr(module, "__version__", "unknown"), os.path.dirname(getattr(module, "__file__", "") or "")


def collect_env():
    """Return a list of ``(name, value)`` rows describing this environment."""
    rows = [("sys.platform", sys.platform), ("Python", sys.version.replace("\n", " ")), ("machine", platform.machine())]
    for name, mod in [
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("detectron2", "detectron2"),
        ("timm", "timm"),
        ("open_clip", "open_clip"),
        ("numpy", "numpy"),
        ("fvcore", "fvcore"),
        ("mfuser", "mfuser"),
    ]:
        version, path = _version(mod)
        rows.append((name, f"{version} @ {path}" if path else version))

    try:
        import detectron2

        has_c = importlib.util.find_spec("detectron2._C") is not None
        rows.append(("detectron2._C (compiled ops)", "yes" if has_c else "no (PyPI fallback; not needed by mfuser)"))
        del detectron2
    except ImportError:
        pass

    import torch

    rows.append(("CUDA available", str(torch.cuda.is_available())))
    if torch.cuda.is_available():
        rows.append(("GPU 0", torch.cuda.get_device_name(0)))
    rows.append(("torch CUDA build", str(torch.version.cuda)))
    rows.append(("torch threads", str(torch.get_num_threads())))

    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401

        rows.append(("mamba_ssm CUDA kernels", "importable"))
    except Exception as e:  # noqa: BLE001
        rows.append(("mamba_ssm CUDA kernels", f"not importable ({type(e).__name__})"))

    try:
        scan_mod = importlib.import_module("mfuser.layers.selective_scan")

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            rows.append((f"selective-scan backend ({device})", scan_mod.select_backend(device)))
    except (ImportError, AttributeError) as e:
        rows.append(("selective-scan backend", f"unavailable ({e})"))
    return rows


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    rows = collect_env()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
