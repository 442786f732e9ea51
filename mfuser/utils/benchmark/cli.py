"""The ``tools/benchmark.py`` command line: options, config loading, table / JSON output."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch
from torch import nn

from mfuser.layers.amp import cpu_bf16_support
from mfuser.utils.cli import non_negative_int, positive_int, size_hw

from .measure import PRECISION_DTYPES, TARGET_BF16_OVER_FP32, BenchmarkError, set_clock
from .runs import run_model, run_slide, run_train_step

__all__ = ["build_parser", "main"]

# ------------------------------------------------------------------------------------------------ arguments
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", required=True, help="LazyConfig file defining a top-level `model`")
    common.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    common.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads (default 1)")
    common.add_argument("--warmup", type=non_negative_int, default=1, help="untimed runs before timing (default 1)")
    common.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs; the minimum is reported (default 3)")
    common.add_argument("--precision", "--amp", dest="precision", choices=("auto", "fp32", "off", "bf16", "fp16"),
                        default="auto",
                        help="autocast: auto = on a CPU bf16 where it computes bf16 natively (as train.precision=auto)"
                             " else fp32; on CUDA the config's train.amp precision (bf16 for model configs or when "
                             "train.amp is enabled), fp32 where train.amp.enabled is False; fp32 (= off), bf16, "
                             "fp16 (CUDA only) force it. `model` and `slide` also measure fp32 in the same run "
                             "and report both side by side (see --no-reference)")
    common.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall (default) or cpu: the process's CPU time, which on a machine shared with other "
                             "jobs leaves out the time slices a --threads 1 run waits for a core (CPU only)")
    common.add_argument("--no-reference", action="store_true",
                        help="model / slide: measure only the chosen precision, not also fp32 beside it")
    common.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    common.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    common.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring (or docs/benchmarks.md) for methods and keys.")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    p = sub.add_parser("model", parents=[common], help="time and FLOPs: full model vs the frozen encoders alone")
    p.add_argument("--size", type=size_hw, default=(512, 512), help="input N or HxW (default 512)")
    p.add_argument("--no-flops", action="store_true", help="skip the fvcore FLOP count")
    p = sub.add_parser("slide", parents=[common], help="sliding-window inference: window by window vs batched")
    p.add_argument("--size", type=size_hw, default=(1024, 2048), help="image HxW (default 1024x2048)")
    p.add_argument("--window-batch", type=positive_int, default=None,
                   help="windows per forward in batched mode (default: the config's window_batch_size)")
    p = sub.add_parser("train-step", parents=[common], help="one optimizer step with / without activation "
                                                            "checkpointing")
    p.add_argument("--batch", type=positive_int, default=2, help="images per step (default 2)")
    p.add_argument("--crop", type=size_hw, default=(512, 512), help="crop N or HxW (default 512)")
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


def resolve_precision(amp: str, cfg, device: torch.device) -> str:
    """The precision name ("fp32", "bf16", "fp16") following ``--precision`` / ``--amp`` (see its help)."""
    if amp in ("off", "fp32"):
        return "fp32"
    if amp in ("bf16", "fp16"):
        if amp == "fp16" and device.type != "cuda":
            raise BenchmarkError("--precision fp16 needs --device cuda (use bf16 on CPU)")
        return amp
    if device.type != "cuda":  # the CPU rule of mfuser.engine.precision's "auto"
        return "bf16" if cpu_bf16_support()[0] else "fp32"
    train_amp = cfg.get("train", {}).get("amp", None) if hasattr(cfg, "get") else None
    if train_amp is None:
        return "bf16"
    if not train_amp.get("enabled", False):
        return "fp32"
    return "fp16" if train_amp.get("precision", "bf16") == "fp16" else "bf16"


def compare_precisions(result: dict, name: str, ref: str) -> None:
    """Add ``over_<ref>`` (time ratios name / ref of the same run) and the targets of issue 14 to ``result``."""
    per = result["by_precision"]
    a, b = per[name], per[ref]
    keys = [k for k in ("time_encoders_s", "time_full_s", "time_single_s", "time_batched_s") if k in a]
    ratios = {k: a[k] / b[k] for k in keys}
    if "breakdown_s" in a:
        ratios["breakdown_s"] = {k: (a["breakdown_s"][k] / b["breakdown_s"][k]) if b["breakdown_s"][k] > 0 else None
                                 for k in a["breakdown_s"]}
        result["targets"][f"full_{name}_over_{ref}<={TARGET_BF16_OVER_FP32}"] = \
            ratios["time_full_s"] <= TARGET_BF16_OVER_FP32
        result["targets"][f"added_share_{name}<={ref}"] = a["added_share"] <= b["added_share"]
    result[f"over_{ref}"] = ratios


class _StandInTokenizer:
    """Token ids for a text tower whose tokenizer file is absent: every name becomes the same valid id sequence.

    Speed and memory do not depend on which ids a class name has, so the benchmark runs on a fresh machine without
    the SigLIP SentencePiece file; the substitution is reported in the result's ``notes``.
    """

    def __init__(self, length: int, vocab_size: int):
        self.length, self.token = length, min(1, vocab_size - 1)

    def __call__(self, names) -> torch.Tensor:
        return torch.full((len(names), self.length), self.token, dtype=torch.long)


def build_model(cfg, device: torch.device) -> tuple[nn.Module, list[str]]:
    """Instantiate ``cfg.model`` on ``device``; returns (model, notes about substitutions made)."""
    from detectron2.config import instantiate

    notes = []
    tokenizer = cfg.model.get("text_encoder", {}).get("tokenizer_path", None)
    stand_in = tokenizer is not None and not os.path.isfile(str(tokenizer))
    if stand_in:
        cfg.model.text_encoder.tokenizer_path = None
        notes.append(f"text tokenizer file not found ({tokenizer}): class names tokenised with stand-in ids "
                     "(same sequence length, so the same cost)")
    try:
        model = instantiate(cfg.model)
    except (TypeError, ValueError) as e:  # a bad override or config value: name it, no traceback
        raise BenchmarkError(f"building the config's `model` failed: {type(e).__name__}: {e}") from e
    missing = [a for a in ("backbone", "text_encoder", "text_enhancer", "head") if not hasattr(model, a)]
    if missing:
        raise BenchmarkError(f"the config's model ({type(model).__name__}) is not an MFuser: no {missing}")
    if stand_in:
        text = model.text_encoder
        text.tokenizer = _StandInTokenizer(text.name_length, text.tower.vocab_size)
    return model.to(device), notes


# ------------------------------------------------------------------------------------------------ output
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def _print_side_by_side(per: dict, file) -> None:
    """One row per measured key: its value in every precision, and the ratio of the first to the last."""
    names = list(per)
    rows = []
    for key, value in per[names[0]].items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", [per[n].get(key, {}).get(k) for n in names]) for k in value]
        else:
            rows.append((key, [per[n].get(key) for n in names]))
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{n:>10}" for n in names) + f"  {names[0] + '/' + names[-1]:>10}",
          file=file)
    for key, vals in rows:
        if any(isinstance(v, dict) for v in vals):
            continue
        cells = "  ".join(f"{_fmt(v):>10}" for v in vals)
        a, b = vals[0], vals[-1]
        ratio = _fmt(a / b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""
        print(f"{key:<{width}}  {cells}  {ratio:>10}", file=file)


def print_table(result: dict, file=None) -> None:
    file = file or sys.stdout  # looked up at call time (a default argument would keep the stdout of import time)
    width = max(len(k) for k in result)
    for k, v in result.items():
        if k == "by_precision":
            if len(v) > 1:
                print("by precision (same run)", file=file)
                _print_side_by_side(v, file)
            continue
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
        print(f"error: --device must be cpu or cuda[:i], got {args.device!r}", file=sys.stderr)
        return 2
    try:
        if device.type not in ("cpu", "cuda"):
            raise BenchmarkError(f"--device must be cpu or cuda[:i], got {args.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError(f"--device {args.device}: CUDA is not available")
        if args.clock == "cpu" and device.type != "cpu":
            raise BenchmarkError("--clock cpu measures CPU time: use it with --device cpu")
        set_clock(args.clock)
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        cfg = load_model_config(args.config_file, args.opts)
        precision = resolve_precision(args.precision, cfg, device)
        names = [precision]
        if precision != "fp32" and args.subcommand in ("model", "slide") and not args.no_reference:
            names.append("fp32")  # the reference, measured in the same run
        dtypes = {n: PRECISION_DTYPES[n] for n in names}
        load_before = os.getloadavg()[0]
        model, notes = build_model(cfg, device)
        result = {
            "subcommand": args.subcommand,
            "config": args.config_file,
            "device": str(device),
            "threads": args.threads,
            "clock": args.clock,
            "precision": precision,
            "reference_precision": names[1] if len(names) > 1 else None,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "overrides": list(args.opts),
            "notes": notes,
        }
        result.update(RUNNERS[args.subcommand](args, cfg, model, device, dtypes))
        if len(names) > 1:
            compare_precisions(result, names[0], names[1])
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["targets"] = result.pop("targets")
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0
