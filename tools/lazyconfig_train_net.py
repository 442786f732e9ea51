#!/usr/bin/env python
"""Train or evaluate an MFuser LazyConfig, the Detectron2 way.

    python tools/lazyconfig_train_net.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py
    python tools/lazyconfig_train_net.py --config-file CFG --resume                      # continue a run
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth \
        'dataloader.targets=[cityscapes_val,my_domain_val]'                              # other domains
    python tools/lazyconfig_train_net.py --config-file CFG --num-gpus 2 train.device=cpu  # 2-process DDP (gloo)

Config keys read (LazyConfig):
    model                     LazyCall of a detectron2-style model: list[dict] -> loss dict (train) /
                              [{"sem_seg": Tensor[K, H, W]}] at the original size (eval).
    optimizer                 LazyCall of a torch optimizer; ``optimizer.params.model`` is filled in here.
    lr_multiplier             fvcore ParamScheduler (multiplier over the optimizer lr).
    train                     dict of configs/common/train.py (device, amp, ddp, checkpointer, eval_period, ...).
    dataloader.train          LazyCall of the source training loader (its sampler should be a
                              mfuser.engine.ResumableSampler so that --resume continues at the same sample).
    dataloader.targets        list of registered dataset names evaluated after training and by --eval-only.
    dataloader.test           LazyCall of a test loader; ``dataset.names`` and ``mapper.resize_to`` are set
                              per target here.
    dataloader.test_resize    optional {dataset name: (long, short) edge sizes}; unlisted names use
                              ``dataloader.test_resize_default`` (None = original size).
    dataloader.evaluator      LazyCall of an evaluator factory taking ``dataset_name`` (set per target).

Outputs in ``train.output_dir``: log.txt, config.yaml, metrics.json, TensorBoard events, model_XXXXXXX.pth and
model_final.pth (atomic writes; ``last_checkpoint`` names the newest complete one), results.json (evaluation).

On CPU ``--num-gpus N`` means N processes (gloo). Exit status 1 with one "error: ..." line on bad input.
"""
import logging
import os
import sys

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from omegaconf import OmegaConf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from mfuser.engine import (  # noqa: E402
    MFuserAMPTrainer,
    MFuserCheckpointer,
    MFuserTrainer,
    NonFiniteLossError,
    count_trainable,
    find_resumable_sampler,
)
from mfuser.engine.checkpoint import CheckpointError  # noqa: E402
from mfuser.evaluation import (  # noqa: E402
    check_registered,
    evaluate_domains,
    format_results_table,
    write_results_json,
)

logger = logging.getLogger("mfuser.train_net")


class ConfigError(ValueError):
    """A config value that cannot work (named in the message)."""


# ---------------------------------------------------------------------------------------------- config
def _as_list(names):
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def train_dataset_names(cfg):
    """Source dataset names: ``dataloader.train.names`` (mfuser loaders) or ``.dataset.names`` (detectron2's)."""
    names = OmegaConf.select(cfg, "dataloader.train.names", default=None)
    if names is None:
        names = OmegaConf.select(cfg, "dataloader.train.dataset.names", default=None)
    return _as_list(names)


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


def target_names(cfg):
    return _as_list(OmegaConf.select(cfg, "dataloader.targets", default=None))


def check_config(cfg, args) -> None:
    """Fail early, before any model is built or process spawned, on the bad inputs we can see."""
    import mfuser.data  # noqa: F401  (registers the built-in datasets)

    names = target_names(cfg) + ([] if args.eval_only else train_dataset_names(cfg))
    check_registered(names)
    check_model_files(cfg)
    device = str(cfg.train.get("device", "cuda"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device} but CUDA is not available; pass train.device=cpu")
    init = cfg.train.get("init_checkpoint", "")
    if args.eval_only and not init:
        raise ConfigError("--eval-only needs train.init_checkpoint=PATH (a trained checkpoint)")
    if init and "://" not in init and not os.path.isfile(init):
        raise FileNotFoundError(f"train.init_checkpoint: file not found: {init!r}")
    amp = cfg.train.get("amp", {})
    if amp.get("enabled", False) and amp.get("precision", "bf16") in ("fp16", "float16") and device == "cpu":
        raise ConfigError("train.amp.precision=fp16 needs CUDA; use train.amp.precision=bf16 on CPU")


def _device(cfg) -> torch.device:
    return torch.device(cfg.train.get("device", "cuda"))


# ---------------------------------------------------------------------------------------------- eval
def build_target_loader(cfg, name):
    """Instantiate ``dataloader.test`` for one target (sets ``dataset.names`` and ``mapper.resize_to``)."""
    test = cfg.dataloader.test
    test.dataset.names = name
    if "mapper" in test and test.mapper is not None and "resize_to" in test.mapper:
        sizes = cfg.dataloader.get("test_resize", None) or {}
        resize = sizes[name] if name in sizes else cfg.dataloader.get("test_resize_default", None)
        test.mapper.resize_to = list(resize) if resize is not None else None
    return instantiate(test)


def build_target_evaluator(cfg, name):
    evaluator = cfg.dataloader.evaluator
    evaluator.dataset_name = name
    return instantiate(evaluator)


def do_test(cfg, model, *, tag: str = ""):
    """Evaluate ``model`` on every ``dataloader.targets``; print the table, write results.json.

    Returns ``{domain: {"mIoU", "mACC"}, "average": {...}}`` (floats) for detectron2's EvalHook.
    """
    names = target_names(cfg)
    if not names:
        logger.warning("dataloader.targets is empty: nothing to evaluate")
        return {}
    loaders = {n: build_target_loader(cfg, n) for n in names}
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


def do_train(args, cfg):
    """Train as configured; returns the trainer (its ``.model`` may be DDP-wrapped)."""
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
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model, tag=f"_{trainer.iter:07d}")),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    sampler = find_resumable_sampler(train_loader)
    if sampler is not None:
        sampler.set_skip(start_iter * per_rank_batch_size(cfg))
        if start_iter:
            logger.info(f"Resuming the sample stream at index {sampler.skip} (iteration {start_iter})")
    elif start_iter:
        logger.warning("The train loader has no ResumableSampler: the resumed run restarts the sample stream")
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    default_setup(cfg, args)
    check_config(cfg, args)
    if args.eval_only:
        model = build_model(cfg)
        model = _ddp(model, cfg)
        MFuserCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


CLEAR_ERRORS = (KeyError, FileNotFoundError, ConfigError, CheckpointError, NonFiniteLossError)


def _error(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return f"error: {msg}"


def invoke_main() -> None:
    args = default_argument_parser(epilog=__doc__).parse_args()
    try:
        if not args.config_file:
            raise ConfigError("--config-file is required")
        if not os.path.isfile(args.config_file):
            raise FileNotFoundError(f"--config-file: no such file: {args.config_file!r}")
        # validate in the parent before spawning workers: errors then appear once, without tracebacks
        cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
        check_config(cfg, args)
        if str(cfg.train.get("device", "cuda")) == "cpu" and args.num_gpus > 1:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # detectron2's launch picks gloo when no GPU is visible
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except CLEAR_ERRORS as e:
        print(_error(e), file=sys.stderr)
        sys.exit(1)
    except torch.multiprocessing.ProcessRaisedException as e:  # a worker failed: show its last line
        last = [line for line in str(e).strip().splitlines() if line.strip()][-1]
        print(f"error (in a worker process): {last}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    invoke_main()
