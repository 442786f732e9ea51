"""Train / evaluate orchestration for LazyConfig models, the counterpart of ``detectron2/engine/defaults.py``.

``tools/lazyconfig_train_net.py`` is only an argument parser around :func:`run_train_net`; everything a run does
lives here so that other tools and the tests import it instead of a script:

* :func:`check_config`: fail early, before a model is built or a process spawned, on the bad inputs visible in
  the config (unregistered datasets, missing model files, CUDA asked for but absent, ...);
* :func:`resolve_test_resize`, :func:`build_target_loader`, :func:`build_target_evaluator`: one evaluation
  loader / evaluator per target domain of ``dataloader.targets``;
* :func:`do_test`, :func:`do_train`, :func:`build_model`: evaluation on every target (table + ``results.json``)
  and training with periodic checkpoints and evaluation;
* :func:`setup_run`: logging to the console and ``log.txt`` (:mod:`mfuser.engine.log`), ``config.yaml``, seeds;
* :func:`prepare_output_dir`: a training run never replaces another run's files (``--resume`` continues it,
  ``--overwrite`` replaces it), and ``--eval-only`` writes into its own ``eval/<checkpoint>/`` folder;
* :func:`load_config`: the config file with strict overrides (:mod:`mfuser.engine.overrides`);
* :data:`CLEAR_ERRORS` and :func:`format_error`: which exceptions a command line prints as one
  ``error: ...`` line (exit status 1) instead of a traceback (``--debug`` or ``MFUSER_DEBUG=1`` shows it).

Config keys read (LazyConfig):

=========================  =============================================================================
``model``                  LazyCall of a detectron2-style model: list[dict] -> loss dict (train) /
                           ``[{"sem_seg": Tensor[K, H, W]}]`` at the original size (eval).
``optimizer``              LazyCall of a torch optimizer; ``optimizer.params.model`` is filled in here.
``lr_multiplier``          fvcore ParamScheduler (multiplier over the optimizer lr).
``train``                  dict of configs/common/train.py (device, amp, ddp, checkpointer, eval_period, ...).
``dataloader.train``       LazyCall of the source training loader (its sampler should be a
                           :class:`mfuser.data.samplers.ResumableSampler` so that ``--resume`` continues at the same
                           sample).
``dataloader.targets``     registered dataset names evaluated after training and by ``--eval-only``.
``dataloader.test``        LazyCall of a test loader; ``dataset.names`` and ``mapper.resize_to`` are set per
                           target here.
``dataloader.test_resize`` optional ``{dataset name: (long, short)}`` edge sizes; unlisted names use
                           ``dataloader.test_resize_default`` (None = original size).
``dataloader.evaluator``   LazyCall of an evaluator factory taking ``dataset_name`` (set per target).
=========================  =============================================================================

Outputs in ``train.output_dir``: log.txt, config.yaml, metrics.json, TensorBoard events, model_XXXXXXX.pth and
model_final.pth (atomic writes; ``last_checkpoint`` names the newest complete one), results.json (evaluation,
rewritten as each target domain finishes; a failed domain is recorded with its error). ``--eval-only`` writes
log.txt, config.yaml and results.json to ``<output_dir>/eval/<checkpoint name>/`` (``-2``, ``-3``, ... when that
folder already exists).
"""
from __future__ import annotations

import copy
import glob
import json
import logging
import os
import shutil
import sys

import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser as d2_default_argument_parser
from detectron2.engine import default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from omegaconf import OmegaConf

from mfuser.data.samplers import find_resumable_sampler
from mfuser.evaluation import (
    average_over_domains,
    check_registered,
    evaluate_domains,
    format_results_table,
    write_results_json,
)
from mfuser.utils import cli
from mfuser.utils.io import atomic_write

from .checkpoint import CheckpointError, MFuserCheckpointer, RNGState
from .log import setup_run_logging
from .optimizer import count_trainable
from .overrides import OverrideError, apply_overrides
from .precision import announce_precision, precision_from_config
from .train_loop import NonFiniteLossError, build_trainer

__all__ = [
    "CLEAR_ERRORS",
    "ConfigError",
    "EvaluationError",
    "OverrideError",
    "UsageError",
    "build_model",
    "build_target_evaluator",
    "build_target_loader",
    "check_config",
    "check_model_files",
    "default_argument_parser",
    "do_test",
    "do_train",
    "format_error",
    "launch_train_net",
    "load_config",
    "prepare_output_dir",
    "resolve_test_resize",
    "run_train_net",
    "setup_run",
    "target_names",
    "train_dataset_names",
]

logger = logging.getLogger("mfuser.train_net")


class ConfigError(ValueError):
    """A config value that cannot work (named in the message)."""


class UsageError(ConfigError, cli.UsageError):
    """The command line itself is wrong (no or a missing ``--config-file``): exit status 2."""


class EvaluationError(RuntimeError):
    """One or more target domains failed to evaluate (the others' results are in results.json)."""


# Exceptions a command line reports as one "error: ..." line without their type: bad input the user can fix
# (missing / corrupt files and folders, a full disk, bad config values and overrides, bad checkpoints). Any other
# exception is reported on one line too, with its type and a hint to --debug (mfuser.utils.cli.describe_error).
CLEAR_ERRORS = (*cli.EXPECTED_ERRORS, CheckpointError, NonFiniteLossError, EvaluationError)


def format_error(e: BaseException) -> str:
    """The one ``error: ...`` line for ``e`` (:func:`mfuser.utils.cli.describe_error`)."""
    return cli.describe_error(e, expected=isinstance(e, CLEAR_ERRORS))


def default_argument_parser(epilog=None):
    """detectron2's ``default_argument_parser`` plus ``--overwrite`` and ``--debug``."""
    parser = d2_default_argument_parser(epilog=epilog)
    parser.add_argument("--overwrite", action="store_true",
                        help="train into an output folder that holds another run, replacing that run's files")
    return cli.add_debug_argument(parser)


# ---------------------------------------------------------------------------------------------- config
def _as_list(names):
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def train_dataset_names(cfg) -> list[str]:
    """Source dataset names: ``dataloader.train.names`` (mfuser loaders) or ``.dataset.names`` (detectron2's)."""
    names = OmegaConf.select(cfg, "dataloader.train.names", default=None)
    if names is None:
        names = OmegaConf.select(cfg, "dataloader.train.dataset.names", default=None)
    return _as_list(names)


def target_names(cfg) -> list[str]:
    """The evaluation targets, ``dataloader.targets`` (a name or a list)."""
    return _as_list(OmegaConf.select(cfg, "dataloader.targets", default=None))


# (config key, what the file is) of every file the model reads when it is built
MODEL_FILES = (
    ("model.backbone.vfm.weights", "pretrained VFM weights"),
    ("model.backbone.vlm.weights", "pretrained VLM weights"),
    ("model.text_encoder.weights", "pretrained text-tower weights"),
    ("model.text_encoder.tokenizer_path", "SigLIP SentencePiece tokenizer"),
)


def check_model_files(cfg) -> None:
    """Raise FileNotFoundError naming the config key of every file the model needs but cannot find."""
    missing = []
    for key, what in MODEL_FILES:
        path = OmegaConf.select(cfg, key, default=None)
        if path and not os.path.isfile(path):
            missing.append(f"{key}={path!r} ({what})")
    if missing:
        raise FileNotFoundError(
            "model files not found: " + "; ".join(missing) + ". Put them there (see README 'Pretrained encoders') "
            "or override the paths, e.g. model.backbone.vfm.weights=/abs/path.pth"
        )


# files of a training run in train.output_dir (what --overwrite removes)
RUN_FILES = ("model_*.pth", "last_checkpoint", "metrics.json", "results.json", "config.yaml", "log.txt",
             "log.txt.rank*", "events.out.tfevents.*", "inference")


def _run_checkpoints(output_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(output_dir, "model_*.pth"))) + \
        [p for p in [os.path.join(output_dir, "last_checkpoint")] if os.path.exists(p)]


def check_output_dir(cfg, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to train into a folder holding another run's checkpoints unless ``resume`` or ``overwrite``.

    Raises:
        ConfigError: naming the folder, its checkpoints, and the options.
    """
    out = cfg.train.get("output_dir", None)
    if not out or resume or overwrite or not os.path.isdir(out):
        return
    found = _run_checkpoints(out)
    if found:
        names = ", ".join(os.path.basename(p) for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ConfigError(f"train.output_dir={out!r} already holds a training run ({names}); pass --resume to "
                          "continue it, --overwrite to replace it, or set another train.output_dir")


def prepare_output_dir(cfg, *, eval_only: bool = False, resume: bool = False, overwrite: bool = False) -> str:
    """Make ``train.output_dir`` ready for this run and return it (main process; call once, before logging).

    * training with ``overwrite``: the earlier run's files (:data:`RUN_FILES`) are removed; other files (for
      example ``eval/`` folders) stay;
    * ``eval_only``: ``train.output_dir`` becomes ``<output_dir>/eval/<checkpoint name>`` (``-2``, ``-3``, ... if it
      exists), created here, so an evaluation never replaces a training run's or an earlier evaluation's files.
    """
    out = cfg.train.output_dir
    if eval_only:
        init = str(cfg.train.get("init_checkpoint", "") or "checkpoint")
        stem = os.path.splitext(os.path.basename(init.split("?")[0].rstrip("/")))[0] or "checkpoint"
        base = os.path.join(out, "eval", stem)
        for n in range(1, 10000):
            candidate = base if n == 1 else f"{base}-{n}"
            try:
                os.makedirs(candidate)
            except FileExistsError:
                continue
            cfg.train.output_dir = candidate
            return candidate
        raise ConfigError(f"too many evaluation folders under {os.path.dirname(base)!r}")
    if overwrite and os.path.isdir(out):
        removed = []
        for pattern in RUN_FILES:
            for path in glob.glob(os.path.join(out, pattern)):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                removed.append(os.path.basename(path))
        if removed:
            logger.warning(f"--overwrite: removed the earlier run's files from {out}: {', '.join(sorted(removed))}")
    os.makedirs(out, exist_ok=True)
    return out


def check_config(cfg, *, eval_only: bool, resume: bool = False, overwrite: bool = False) -> None:
    """Fail early, before any model is built or process spawned, on the bad inputs we can see.

    Raises:
        one of :data:`CLEAR_ERRORS`, naming the config key and what was expected.
    """
    import mfuser.data  # noqa: F401  (registers the built-in datasets)

    names = target_names(cfg) + ([] if eval_only else train_dataset_names(cfg))
    check_registered(names)
    check_model_files(cfg)
    device = str(cfg.train.get("device", "cuda"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device} but CUDA is not available; pass train.device=cpu")
    init = cfg.train.get("init_checkpoint", "")
    if eval_only and not init:
        raise ConfigError("--eval-only needs train.init_checkpoint=PATH (a trained checkpoint)")
    if init and "://" not in init and not os.path.isfile(init):
        raise FileNotFoundError(f"train.init_checkpoint: file not found: {init!r}")
    precision_from_config(cfg)  # train.precision / train.amp: a bad value, fp16 on a CPU or a contradiction
    if not eval_only:
        check_output_dir(cfg, resume=resume, overwrite=overwrite)


def _device(cfg) -> torch.device:
    return torch.device(cfg.train.get("device", "cuda"))


# ---------------------------------------------------------------------------------------------- eval
def resolve_test_resize(cfg, name: str) -> tuple[int, int] | None:
    """The keep-ratio test resize ``(long, short)`` of dataset ``name`` (``dataloader.test_resize[name]``, else
    ``dataloader.test_resize_default``), or None for the original size."""
    sizes = cfg.dataloader.get("test_resize", None) or {}
    resize = sizes[name] if name in sizes else cfg.dataloader.get("test_resize_default", None)
    return (int(resize[0]), int(resize[1])) if resize is not None else None


def first_items(items, n: int) -> list:
    """``items[:n]`` as a list (a LazyCall-able step: slices a dataset list inside a config)."""
    return list(items)[:n]


def build_target_loader(cfg, name: str, max_images: int | None = None):
    """Instantiate ``dataloader.test`` for one target (sets ``dataset.names`` and ``mapper.resize_to``).

    Args:
        max_images: evaluate only the first ``max_images`` images of the target (a fixed subset; None: all).
    """
    test = cfg.dataloader.test
    test.dataset.names = name
    if "mapper" in test and test.mapper is not None and "resize_to" in test.mapper:
        resize = resolve_test_resize(cfg, name)
        test.mapper.resize_to = list(resize) if resize is not None else None
    if max_images is None:
        return instantiate(test)
    subset = copy.deepcopy(test)  # a copy: the config keeps its dataset call
    subset.dataset = L(first_items)(items=test.dataset, n=int(max_images))  # stays lazy: records remain dicts
    return instantiate(subset)


def build_target_evaluator(cfg, name: str):
    """Instantiate ``dataloader.evaluator`` for one target (sets ``dataset_name``)."""
    evaluator = cfg.dataloader.evaluator
    evaluator.dataset_name = name
    return instantiate(evaluator)


def _write_results(cfg, results: dict, tag: str, precision=None) -> None:
    out = cfg.train.output_dir
    extra = {"precision": precision.as_dict()} if precision is not None else None
    write_results_json(results, os.path.join(out, "results.json"), extra=extra)
    if tag:
        write_results_json(results, os.path.join(out, "inference", f"results{tag}.json"), extra=extra)


def do_test(cfg, model, *, tag: str = "", max_images: int | None = None) -> dict:
    """Evaluate ``model`` on every ``dataloader.targets``; print the table, write results.json.

    ``results.json`` is rewritten after each target domain, so the finished domains' results survive a later
    failure. A domain that fails (missing or bad files, ...) is recorded as ``{"error": "<message>"}``, the
    remaining domains are still evaluated, and :class:`EvaluationError` is raised at the end.

    Args:
        tag: suffix of the extra copy ``inference/results<tag>.json`` (periodic evaluations during training).
        max_images: evaluate the first ``max_images`` images of each target only (None: all of them).

    Returns ``{domain: {"mIoU", "mACC"}, "average": {...}}`` (floats) for detectron2's EvalHook.
    """
    names = target_names(cfg)
    if not names:
        logger.warning("dataloader.targets is empty: nothing to evaluate")
        return {}
    results, failed = {}, {}
    main = comm.is_main_process()
    precision = precision_from_config(cfg)  # autocast of the forward passes (mfuser/engine/precision.py)
    announce_precision(precision)
    for name in names:
        try:
            loader = build_target_loader(cfg, name, max_images)
            evaluator = build_target_evaluator(cfg, name)
            with precision.autocast():
                results.update(evaluate_domains(model, {name: loader}, {name: evaluator}))
            results.pop("average", None)
        except Exception as e:  # noqa: BLE001  (recorded, the other domains still run, raised at the end)
            if comm.get_world_size() > 1:
                raise  # the other ranks would wait for this one in the evaluator's gather
            failed[name] = format_error(e)[len("error: "):]
            results[name] = {"error": failed[name]}
            logger.error(f"Evaluation of {name} failed: {failed[name]}", exc_info=True)
        if main:
            _write_results(cfg, {**results, "average": average_over_domains(results)}, tag, precision)
    results["average"] = average_over_domains(results)
    if main:
        table = format_results_table(results, per_class=bool(cfg.train.get("per_class_table", False)))
        logger.info(f"Evaluation results{tag}:\n{table}")
        print(table, flush=True)
        logger.info(f"Results written to {os.path.join(cfg.train.output_dir, 'results.json')}")
    if failed:
        raise EvaluationError(f"{len(failed)} of {len(names)} target domain(s) failed: "
                              + "; ".join(f"{n}: {m}" for n, m in failed.items())
                              + f" (the others are in {os.path.join(cfg.train.output_dir, 'results.json')})")
    return {n: {"mIoU": r["mIoU"], "mACC": r["mACC"]} for n, r in results.items()}


# ---------------------------------------------------------------------------------------------- train
def build_model(cfg):
    """Instantiate ``cfg.model`` on ``train.device`` and log its trainable parameter count."""
    model = instantiate(cfg.model)
    model.to(_device(cfg))
    logger.info(f"Model: {type(model).__name__}, {count_trainable(model):,} trainable parameters")
    return model


def _ddp(model, cfg):
    kwargs = dict(cfg.train.get("ddp", {}))
    if _device(cfg).type != "cuda":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def per_rank_batch_size(cfg) -> int:
    train = cfg.dataloader.train
    single = train.get("single_gpu_batch_size", None) if hasattr(train, "get") else None
    if single:
        return int(single)
    return int(train.total_batch_size) // comm.get_world_size()


class _PreservedRNG:
    """Restore the global torch / numpy / Python generators on exit: an evaluation during training must not change
    the randomness of the following training steps (else a resumed run, which skips that evaluation, would differ
    from an uninterrupted one)."""

    def __enter__(self):
        self.state = RNGState().state_dict()

    def __exit__(self, *exc):
        RNGState().load_state_dict(self.state)
        return False


def _periodic_test(cfg, model, trainer) -> dict:
    """The EvalHook's evaluation: on ``train.eval_subset`` images per target during training, on all at the end."""
    final = trainer.iter + 1 >= cfg.train.max_iter
    subset = None if final else cfg.train.get("eval_subset", None)
    with _PreservedRNG():
        return do_test(cfg, model, tag=f"_{trainer.iter:07d}", max_images=subset)


def truncate_metrics(path: str, start_iter: int) -> int:
    """Drop the lines of ``metrics.json`` (one JSON object per line) with ``iteration >= start_iter``: the part of
    an interrupted run that a resumed run repeats. Atomic; returns the number of lines dropped."""
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            it = json.loads(line).get("iteration", -1)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut by the kill: dropped
        if it < start_iter:
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines):
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(kept)

        atomic_write(path, write)
    return len(lines) - len(kept)


def do_train(cfg, *, resume: bool = False):
    """Train as configured (``--resume``: continue from the newest intact checkpoint); returns the trainer (its
    ``.model`` may be DDP-wrapped).

    Exact resume (CPU, same worker count): the checkpoint holds the model, optimizer, scheduler, iteration and the
    global random generators (:class:`~mfuser.engine.checkpoint.RNGState`); the sample stream continues where it
    stopped (:class:`~mfuser.data.samplers.ResumableSampler`) with each sample's augmentation a function of the seed
    and its stream position; evaluations leave the generators as they found them; ``metrics.json`` loses the
    iterations the resumed run repeats. A resumed run then ends with the same weights as an uninterrupted one.
    """
    model = build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = _ddp(model, cfg)

    precision = precision_from_config(cfg)  # train.precision / train.amp (mfuser/engine/precision.py)
    announce_precision(precision)
    trainer = build_trainer(model, train_loader, optimizer, precision=precision.name,
                            device_type=precision.device_type)
    checkpointer = MFuserCheckpointer(model, cfg.train.output_dir, trainer=trainer, rng=RNGState())
    ckpt_cfg = cfg.train.checkpointer
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **ckpt_cfg) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: _periodic_test(cfg, model, trainer)),
    ])

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.resumed_from else 0
    sampler = find_resumable_sampler(train_loader)
    if sampler is not None:
        sampler.set_skip(start_iter * per_rank_batch_size(cfg))
        if start_iter:
            logger.info(f"Resuming the sample stream at index {sampler.skip} (iteration {start_iter})")
    elif start_iter:
        logger.warning("The train loader has no ResumableSampler: the resumed run restarts the sample stream")
    if comm.is_main_process():
        dropped = truncate_metrics(os.path.join(cfg.train.output_dir, "metrics.json"), start_iter)
        if dropped:
            logger.info(f"metrics.json: dropped {dropped} line(s) of iterations >= {start_iter} (repeated now)")
        # the writers open metrics.json for appending: registered after the truncation, and last (detectron2)
        trainer.register_hooks([hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                                                     period=cfg.train.log_period)])
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def load_config(args):
    """``args.config_file`` with ``args.opts`` applied strictly (:func:`mfuser.engine.overrides.apply_overrides`).

    Raises:
        UsageError: no ``--config-file``, or no such file.
        OverrideError: an override that names no config key (the closest keys are listed), does not parse, or has
            a value of the wrong type.
    """
    if not args.config_file:
        raise UsageError("--config-file is required")
    if not os.path.isfile(args.config_file):
        raise UsageError(f"--config-file: no such file: {args.config_file!r}")
    return apply_overrides(LazyConfig.load(args.config_file), list(args.opts))


def setup_run(cfg, args) -> None:
    """detectron2's ``default_setup`` for this project (see :mod:`mfuser.engine.log` for why not it): logging of the
    project's, detectron2's and fvcore's loggers to the console and ``<output_dir>/log.txt``, the environment and
    command line in the log, ``config.yaml`` (atomic) and the seeds (``train.seed + rank``; negative: random)."""
    out = cfg.train.output_dir
    rank = comm.get_rank()
    debug = bool(getattr(args, "debug", False)) or cli.debug_requested([])
    setup_run_logging(out, rank, debug=debug)
    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    # collect_env_info imports torch.utils.cpp_extension, which warns on stderr when CUDA is absent
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logger.info("Environment info:\n" + collect_env_info())
    logger.info(f"Command line arguments: {args}")
    if comm.is_main_process() and out:
        path = os.path.join(out, "config.yaml")
        atomic_write(path, lambda tmp: LazyConfig.save(cfg, tmp))
        logger.info(f"Full config saved to {path}")
    seed = int(cfg.train.get("seed", -1))
    seed_all_rng(None if seed < 0 else seed + rank)


def _prepare_once(cfg, args) -> None:
    """:func:`prepare_output_dir` in the first process that sees ``args``; later processes get its result through
    ``args.opts``."""
    if getattr(args, "output_prepared", False):
        return
    out = prepare_output_dir(cfg, eval_only=args.eval_only, resume=getattr(args, "resume", False),
                             overwrite=getattr(args, "overwrite", False))
    args.opts = [*args.opts, f"train.output_dir={out}"]
    args.output_prepared = True


def run_train_net(args):
    """What ``tools/lazyconfig_train_net.py`` runs in every process: set up, check, then evaluate or train.

    Args:
        args: :func:`default_argument_parser`'s namespace (config_file, opts, eval_only, resume, overwrite, ...).

    Returns:
        the evaluation results (``--eval-only``) or the trainer.
    """
    cfg = load_config(args)
    resume, overwrite = bool(getattr(args, "resume", False)), bool(getattr(args, "overwrite", False))
    check_config(cfg, eval_only=args.eval_only, resume=resume, overwrite=overwrite)
    _prepare_once(cfg, args)
    setup_run(cfg, args)
    if args.eval_only:
        model = _ddp(build_model(cfg), cfg)
        MFuserCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    return do_train(cfg, resume=resume)


def launch_train_net(args) -> int:
    """Check the config in this process, then :func:`run_train_net` in ``args.num_gpus`` processes.

    Every failure, here or in a worker, is printed as one ``error: ...`` line on stderr (:func:`format_error`);
    ``--debug`` or ``MFUSER_DEBUG=1`` lets the exception propagate with its traceback.

    Returns:
        the exit status: 0; 2 for a usage error (no or a missing ``--config-file``); 1 after any other error.
    """
    if "--debug" in args.opts:  # after the overrides: argparse leaves it among them (REMAINDER)
        args.opts = [o for o in args.opts if o != "--debug"]
        args.debug = True
    debug = bool(getattr(args, "debug", False)) or cli.debug_requested([])
    try:
        # validate in the parent before spawning workers: errors then appear once, without tracebacks
        cfg = load_config(args)
        check_config(cfg, eval_only=args.eval_only, resume=bool(getattr(args, "resume", False)),
                     overwrite=bool(getattr(args, "overwrite", False)))
        _prepare_once(cfg, args)
        if str(cfg.train.get("device", "cuda")) == "cpu" and args.num_gpus > 1:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # detectron2's launch picks gloo when no GPU is visible
        launch(run_train_net, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except torch.multiprocessing.ProcessRaisedException as e:  # a worker failed: show its last line
        if debug:
            raise
        last = [line for line in str(e).strip().splitlines() if line.strip()][-1]
        print(f"error (in a worker process): {last}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # noqa: BLE001  (one line per failure; --debug for the traceback)
        if debug:
            raise
        print(format_error(e), file=sys.stderr, flush=True)
        return 2 if isinstance(e, cli.UsageError) else 1
    return 0
