"""Train / evaluate orchestration for LazyConfig models, the counterpart of ``detectron2/engine/defaults.py``.

``tools/lazyconfig_train_net.py`` is only an argument parser around :func:`run_train_net`; everything a run does
lives here so that other tools and the tests import it instead of a script:

* :func:`check_config`: fail early, before a model is built or a process spawned, on the bad inputs visible in
  the config (unregistered datasets, missing model files, CUDA asked for but absent, ...);
* :func:`resolve_test_resize`, :func:`build_target_loader`, :func:`build_target_evaluator`: one evaluation
  loader / evaluator per target domain of ``dataloader.targets``;
* :func:`do_test`, :func:`do_train`, :func:`build_model`: evaluation on every target (table + ``results.json``)
  and training with periodic checkpoints and evaluation;
* :data:`CLEAR_ERRORS` and :func:`format_error`: which exceptions a command line prints as one
  ``error: ...`` line (exit status 1) instead of a traceback.

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
model_final.pth (atomic writes; ``last_checkpoint`` names the newest complete one), results.json (evaluation).
"""
from __future__ import annotations

import copy
import logging
import os
import sys

import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from mfuser.data.samplers import find_resumable_sampler
from mfuser.evaluation import check_registered, evaluate_domains, format_results_table, write_results_json

from .checkpoint import CheckpointError, MFuserCheckpointer
from .optimizer import count_trainable
from .train_loop import MFuserAMPTrainer, MFuserTrainer, NonFiniteLossError

__all__ = [
    "CLEAR_ERRORS",
    "ConfigError",
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
    "resolve_test_resize",
    "run_train_net",
    "target_names",
    "train_dataset_names",
]

logger = logging.getLogger("mfuser.train_net")


class ConfigError(ValueError):
    """A config value that cannot work (named in the message)."""


# Exceptions a command line reports as one "error: ..." line (exit status 1): bad input the user can fix.
CLEAR_ERRORS = (KeyError, FileNotFoundError, ConfigError, CheckpointError, NonFiniteLossError)


def format_error(e: BaseException) -> str:
    """``error: <message>`` for an exception of :data:`CLEAR_ERRORS` (KeyError without its quotes)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return f"error: {msg}"


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


def check_config(cfg, *, eval_only: bool) -> None:
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
    amp = cfg.train.get("amp", {})
    if amp.get("enabled", False) and amp.get("precision", "bf16") in ("fp16", "float16") and device == "cpu":
        raise ConfigError("train.amp.precision=fp16 needs CUDA; use train.amp.precision=bf16 on CPU")


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


def do_test(cfg, model, *, tag: str = "", max_images: int | None = None) -> dict:
    """Evaluate ``model`` on every ``dataloader.targets``; print the table, write results.json.

    Args:
        tag: suffix of the extra copy ``inference/results<tag>.json`` (periodic evaluations during training).
        max_images: evaluate the first ``max_images`` images of each target only (None: all of them).

    Returns ``{domain: {"mIoU", "mACC"}, "average": {...}}`` (floats) for detectron2's EvalHook.
    """
    names = target_names(cfg)
    if not names:
        logger.warning("dataloader.targets is empty: nothing to evaluate")
        return {}
    loaders = {n: build_target_loader(cfg, n, max_images) for n in names}
    evaluators = {n: build_target_evaluator(cfg, n) for n in names}
    results = evaluate_domains(model, loaders, evaluators)
    if comm.is_main_process() and results:
        table = format_results_table(results, per_class=bool(cfg.train.get("per_class_table", False)))
        logger.info(f"Evaluation results{tag}:\n{table}")
        print(table, flush=True)
        out = cfg.train.output_dir
        write_results_json(results, os.path.join(out, "results.json"))
        if tag:
            write_results_json(results, os.path.join(out, "inference", f"results{tag}.json"))
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


def _periodic_test(cfg, model, trainer) -> dict:
    """The EvalHook's evaluation: on ``train.eval_subset`` images per target during training, on all at the end."""
    final = trainer.iter + 1 >= cfg.train.max_iter
    subset = None if final else cfg.train.get("eval_subset", None)
    return do_test(cfg, model, tag=f"_{trainer.iter:07d}", max_images=subset)


def do_train(cfg, *, resume: bool = False):
    """Train as configured (``--resume``: continue from ``last_checkpoint``); returns the trainer (its ``.model``
    may be DDP-wrapped)."""
    model = build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = _ddp(model, cfg)

    amp = cfg.train.get("amp", {})
    if amp.get("enabled", False):
        trainer = MFuserAMPTrainer(model, train_loader, optimizer, precision=amp.get("precision", "bf16"),
                                   device_type=_device(cfg).type)
    else:
        trainer = MFuserTrainer(model, train_loader, optimizer)
    checkpointer = MFuserCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    ckpt_cfg = cfg.train.checkpointer
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **ckpt_cfg) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: _periodic_test(cfg, model, trainer)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    sampler = find_resumable_sampler(train_loader)
    if sampler is not None:
        sampler.set_skip(start_iter * per_rank_batch_size(cfg))
        if start_iter:
            logger.info(f"Resuming the sample stream at index {sampler.skip} (iteration {start_iter})")
    elif start_iter:
        logger.warning("The train loader has no ResumableSampler: the resumed run restarts the sample stream")
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


class UsageError(ConfigError):
    """The command line itself is wrong (no or a missing ``--config-file``): exit status 2."""


def load_config(args):
    """``args.config_file`` with ``args.opts`` applied.

    Raises:
        UsageError: no ``--config-file``, or no such file.
        ConfigError: an override that names no config key or does not parse (``KEY=VALUE`` expected).
    """
    if not args.config_file:
        raise UsageError("--config-file is required")
    if not os.path.isfile(args.config_file):
        raise UsageError(f"--config-file: no such file: {args.config_file!r}")
    cfg = LazyConfig.load(args.config_file)
    try:
        return LazyConfig.apply_overrides(cfg, args.opts)
    except (KeyError, OverrideParseException) as e:  # unknown key / not KEY=VALUE: name the override
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e).strip().splitlines()[0]
        raise ConfigError(f"config override not applied ({msg}); overrides are KEY=VALUE with an existing key, "
                          f"got {list(args.opts)}") from None


def run_train_net(args):
    """What ``tools/lazyconfig_train_net.py`` runs in every process: set up, check, then evaluate or train.

    Args:
        args: detectron2's ``default_argument_parser()`` namespace (config_file, opts, eval_only, resume, ...).

    Returns:
        the evaluation results (``--eval-only``) or the trainer.
    """
    cfg = load_config(args)
    default_setup(cfg, args)
    check_config(cfg, eval_only=args.eval_only)
    if args.eval_only:
        model = _ddp(build_model(cfg), cfg)
        MFuserCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    return do_train(cfg, resume=args.resume)


def launch_train_net(args) -> int:
    """Check the config in this process, then :func:`run_train_net` in ``args.num_gpus`` processes.

    Bad input (:data:`CLEAR_ERRORS`, here or in a worker) is printed as one ``error: ...`` line on stderr.

    Returns:
        the exit status: 0; 2 for a usage error (no or a missing ``--config-file``); 1 after any other error.
    """
    try:
        # validate in the parent before spawning workers: errors then appear once, without tracebacks
        cfg = load_config(args)
        check_config(cfg, eval_only=args.eval_only)
        if str(cfg.train.get("device", "cuda")) == "cpu" and args.num_gpus > 1:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # detectron2's launch picks gloo when no GPU is visible
        launch(run_train_net, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except CLEAR_ERRORS as e:
        print(format_error(e), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except torch.multiprocessing.ProcessRaisedException as e:  # a worker failed: show its last line
        last = [line for line in str(e).strip().splitlines() if line.strip()][-1]
        print(f"error (in a worker process): {last}", file=sys.stderr)
        return 1
    return 0
