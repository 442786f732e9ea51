#!/usr/bin/env python
"""Train or evaluate an MFuser LazyConfig, the Detectron2 way.

    python tools/lazyconfig_train_net.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py
    python tools/lazyconfig_train_net.py --config-file CFG --resume                      # continue a run
    python tools/lazyconfig_train_net.py --config-file CFG --overwrite                   # replace a run
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth \
        'dataloader.targets=[cityscapes_val,my_domain_val]'                              # other domains
    python tools/lazyconfig_train_net.py --config-file CFG --num-gpus 2 train.device=cpu  # 2-process DDP (gloo)

``train.init_checkpoint`` may also be a published MFuser checkpoint (official ``iter_*.pth``): it is converted
in memory (see docs/reproduce.md). What a run reads and writes: :mod:`mfuser.engine.defaults`.

Overrides are strict: ``KEY=VALUE`` needs an existing key (the closest keys are suggested) and a value of its
type; ``+KEY=VALUE`` adds a new key. Training refuses an output folder that holds another run unless ``--resume``
or ``--overwrite``; ``--eval-only`` writes to ``<output_dir>/eval/<checkpoint name>/``.

On CPU ``--num-gpus N`` means N processes (gloo). Every failure is one "error: ..." line (``--debug`` or
``MFUSER_DEBUG=1`` for the traceback): exit status 2 for a missing ``--config-file``, 1 for any other error.
"""
import sys

from mfuser.engine.defaults import default_argument_parser, launch_train_net


def main(argv=None) -> int:
    return launch_train_net(default_argument_parser(epilog=__doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
