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
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KINDS = ("dinov2", "clip", "eva02", "siglip")


def build_encoders(kind, tiny=False):
    """Return ``[(label, encoder), ...]`` for ``kind``: full-size, or the tiny test variants when ``tiny``."""
    from mfuser.modeling import encoders as E
    from mfuser.modeling.encoders.synthetic_checkpoints import tiny_encoder_kwargs

    vision = {"dinov2": E.DINOv2Encoder, "clip": E.CLIPVisionEncoder, "eva02": E.EVA02VisionEncoder,
              "siglip": E.SigLIPVisionEncoder}[kind]
    text = {"clip": E.CLIPTextEncoder, "eva02": E.EVA02TextEncoder, "siglip": E.SigLIPTextEncoder}.get(kind)
    vkw = tiny_encoder_kwargs(kind, "vision") if tiny else {}
    out = [("image tower", vision(**vkw))]
    if text is not None:
        tkw = tiny_encoder_kwargs(kind, "text") if tiny else {}
        if kind == "siglip":
            tkw["tokenizer_path"] = None  # weights only; the tokenizer is not part of this file
        out.append(("text tower", text(**tkw)))
    return out


def _print_names(title, names, limit):
    if not names:
        return
    shown = names if limit <= 0 else names[:limit]
    print(f"  {title} ({len(names)}):")
    for n in shown:
        print(f"    {n}")
    if len(shown) < len(names):
        print(f"    ... {len(names) - len(shown)} more (use --max-names 0 to list all)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("path", help="official checkpoint file")
    parser.add_argument("--kind", required=True, choices=KINDS, help="which official file this is")
    parser.add_argument("--max-names", type=int, default=50,
                        help="list at most this many names per category (0: all); matched names need --verbose")
    parser.add_argument("--verbose", "-v", action="store_true", help="also list matched and ignored key names")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: tiny encoders and files
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from mfuser.modeling.encoders.checkpoints import (
        CheckpointError,
        CheckpointMismatchError,
        describe_state_dict,
        read_state_dict,
    )

    t0 = time.time()
    try:
        sd, fmt = read_state_dict(args.path)
    except CheckpointError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print(f"{args.path}: {fmt}, {len(sd)} entries, read in {time.time() - t0:.1f}s")
    t1 = time.time()
    encoders = build_encoders(args.kind, tiny=args.tiny)
    print(f"built {'tiny' if args.tiny else 'full-size'} {args.kind} encoders in {time.time() - t1:.1f}s")
    status = 0
    for label, enc in encoders:
        n_params = sum(p.numel() for p in enc.parameters())
        try:
            rep = enc.load_official_state_dict(sd, source=args.path, strict=False)
        except CheckpointMismatchError as e:  # e.g. shapes of another model size
            print(f"[{label}] {enc.model_name}: ERROR: {e}")
            status = 1
            continue
        c = rep.counts()
        print(f"[{label}] {enc.model_name} ({n_params:,} params): matched {c['matched']}, missing {c['missing']}, "
              f"unexpected {c['unexpected']}, adapted {c['adapted']}, ignored {c['ignored']}")
        _print_names("missing", rep.missing, args.max_names)
        _print_names("unexpected", rep.unexpected, args.max_names)
        _print_names("adapted", rep.adapted, args.max_names)
        if args.verbose:
            _print_names("matched", rep.matched, args.max_names)
            _print_names("ignored (other tower / recomputed / pretraining-only)", rep.ignored, args.max_names)
        if not rep.ok:
            status = 1
    if status:
        print(f"note: the file {describe_state_dict(sd)}")
    print("OK: 0 missing, 0 unexpected" if status == 0 else "FAILED: see missing / unexpected keys above",
          f"({time.time() - t0:.1f}s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
