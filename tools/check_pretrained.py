#!/usr/bin/env python
"""Check that an official encoder checkpoint loads into MFuser's full-size encoders before a long training job.

Usage:
    python tools/check_pretrained.py pretrained/dinov2_vitl14_pretrain.pth --kind dinov2
    python tools/check_pretrained.py pretrained/ViT-L-14-336px.pt --kind clip
    python tools/check_pretrained.py pretrained/EVA02_CLIP_L_336_psz14_s6B.pt --kind eva02
    python tools/check_pretrained.py pretrained/siglip_vitl16_384.pth --kind siglip

Builds the full-size model(s) the file feeds (image tower, plus the text tower for CLIP / EVA02 / SigLIP), loads
the file and prints matched / missing / unexpected / adapted / ignored key counts and names.
Exit status: 0 all keys fit, 1 missing or unexpected keys (or shapes of another model), 2 unreadable file.

The families (file names, layouts, encoders) are the table ``mfuser.modeling.encoders.families.FAMILIES``; the
check itself is ``mfuser.modeling.encoders.check.check_pretrained``.
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mfuser.modeling.encoders.families import FAMILIES, KINDS  # noqa: E402  (after HF_HUB_OFFLINE)
from mfuser.utils.cli import add_debug_argument, guarded_main  # noqa: E402


@guarded_main
def main(argv=None):
    kinds = "\n".join(f"  {f.name:<7} {f.file_name}" for f in FAMILIES.values())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__ + "\nKinds and their official files:\n" + kinds)
    parser.add_argument("path", help="official checkpoint file")
    parser.add_argument("--kind", required=True, choices=KINDS, help="which official file this is")
    parser.add_argument("--max-names", type=int, default=50,
                        help="list at most this many names per category (0: all); matched names need --verbose")
    parser.add_argument("--verbose", "-v", action="store_true", help="also list matched and ignored key names")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    import torch

    from mfuser.modeling.encoders.check import check_pretrained
    from mfuser.modeling.encoders.checkpoints import CheckpointError

    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        result = check_pretrained(args.path, args.kind, log=print)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.summary(max_names=args.max_names, verbose=args.verbose))
    return result.status


if __name__ == "__main__":
    sys.exit(main())
