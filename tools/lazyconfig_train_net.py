#!/usr/bin/env python
"""Train or evaluate an MFuser LazyConfig, the Detectron2 way.

    python tools/lazyconfig_train_net.py --config-file configs/mfuser/mfuser_eva02_vitl_gta_512.py
    python tools/lazyconfig_train_net.py --config-file CFG --resume                      # continue a run
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=model.pth \
        'dataloader.targets=[cityscapes_val,my_domain_val]'                              # other domains
    python tools/lazyconfig_train_net.py --config-file CFG --num-gpus 2 train.device=cpu  # 2-process DDP (gloo)

``train.init_checkpoint`` may also be a published MFuser checkpoint (official ``iter_*.pth``): it is converted
in memory (see docs/reproduce.md). What a run reads and writes: :mod:`mfuser.engine.defaults`.

On CPU ``--num-gpus N`` means N processes (gloo). One "error: ..." line on bad input: exit status 2 for a
missing ``--config-file``, 1 for any other error.
"""
import sys

from mfuser.engine.defaults import default_argument_parser, launch_train_net


def main(argv=None) -> int:
    return launch_train_net(default_argument_parser(epilog=__doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
