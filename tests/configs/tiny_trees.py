"""Tiny dataset trees in the *prepared* layouts the registrations read (mfuser/data/datasets/*.py,
datasets/README.md), plus the rare-class statistics the source loaders need and a tiny SentencePiece model.

Layouts written under ``root`` (the ``register_all(root)`` root):

* ``gta/images/*.png`` + ``gta/labels/*_labelTrainIds.png`` + ``gta/rcs_class_stats.json``
* ``synthia/RGB/*.png`` + ``synthia/GT/LABELS/*_labelTrainIds.png`` + ``synthia/rcs_class_stats.json``
* ``cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` +
  ``cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png`` + ``cityscapes/rcs_class_stats.json``
* ``bdd100k/images/10k/val/*.jpg`` + ``bdd100k/labels/sem_seg/colormaps/val/*.png`` (palette PNGs, the
  published configs' layout; palette index = trainId)
* ``mapillary/validation/images/*.jpg`` + ``mapillary/cityscapes_trainIdLabel/val/label/*.png``
* ``acdc/rgb_anon/<cond>/val/<seq>/*_rgb_anon.png`` + ``acdc/gt/<cond>/val/<seq>/*_gt_labelTrainIds.png``

Every label holds all 19 trainIds and some ignore (255) pixels; source labels additionally have one class
(road) covering half the image, so that it exceeds the rare-class sampler's ``min_pixels=3000``.
"""
import io
import os

import numpy as np

from mfuser.data.classes import NUM_CLASSES
from mfuser.data.datasets import load_cityscapes, load_gta5, load_synthia
from mfuser.data.rcs_stats import RCS_STATS_FILENAME, save_class_stats
from mfuser.data.samplers import compute_class_stats
from tests.data.trees import save_gray, save_palette, save_rgb

__all__ = ["SOURCE_SIZE", "TARGET_SIZE", "ACDC_CONDITIONS", "label_map", "make_all_trees", "train_spm_model"]

SOURCE_SIZE = (64, 128)  # (h, w): 8192 px, road covers 4096 > min_pixels=3000
TARGET_SIZE = (32, 64)  # (h, w): aspect 1:2, so the configured test resizes give exact sizes
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
NUM = 2  # images per split


def label_map(h: int, w: int, seed: int = 0, road_half: bool = False) -> np.ndarray:
    """(h, w) uint8 trainIds: vertical stripes of all 19 classes and 255 (ignore) in a random order; with
    ``road_half`` the bottom half is road (0)."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(list(range(19)) + [255])
    bounds = np.linspace(0, w, len(values) + 1).astype(int)
    out = np.zeros((h, w), np.uint8)
    for v, a, b in zip(values, bounds[:-1], bounds[1:]):
        out[:, a:b] = v
    if road_half:
        out[h // 2:] = 0
    return out


def _write_stats(dataset_root: str, records, split: str) -> None:
    """What datasets/prepare_*.py write: per-label class pixel counts next to the dataset."""
    save_class_stats(
        os.path.join(dataset_root, RCS_STATS_FILENAME), compute_class_stats(records), num_classes=NUM_CLASSES,
        split=split,
    )


def make_all_trees(root: str) -> str:
    """Write every layout above under ``root``; returns ``root``."""
    sh, sw = SOURCE_SIZE
    th, tw = TARGET_SIZE
    # GTA5 (prepared)
    gta = os.path.join(root, "gta")
    for i in range(NUM):
        save_rgb(os.path.join(gta, "images", f"{i + 1:05d}.png"), sh, sw, i)
        save_gray(os.path.join(gta, "labels", f"{i + 1:05d}_labelTrainIds.png"), label_map(sh, sw, i, True))
    _write_stats(gta, load_gta5(gta), "train")
    # SYNTHIA-RAND-CITYSCAPES (prepared)
    syn = os.path.join(root, "synthia")
    for i in range(NUM):
        save_rgb(os.path.join(syn, "RGB", f"{i:07d}.png"), sh, sw, 10 + i)
        save_gray(os.path.join(syn, "GT", "LABELS", f"{i:07d}_labelTrainIds.png"), label_map(sh, sw, 10 + i, True))
    _write_stats(syn, load_synthia(syn), "train")
    # Cityscapes train (source size) and val (target size)
    cs = os.path.join(root, "cityscapes")
    for split, city, (h, w) in (("train", "aachen", SOURCE_SIZE), ("val", "frankfurt", TARGET_SIZE)):
        for i in range(NUM):
            stem = f"{city}_{i:06d}_000019"
            save_rgb(os.path.join(cs, "leftImg8bit", split, city, stem + "_leftImg8bit.png"), h, w, 20 + i)
            save_gray(os.path.join(cs, "gtFine", split, city, stem + "_gtFine_labelTrainIds.png"),
                      label_map(h, w, 20 + i, split == "train"))
    _write_stats(cs, load_cityscapes(cs, "train"), "train")
    # BDD100K 10k val, colour-map (palette) labels
    bdd = os.path.join(root, "bdd100k")
    for i in range(NUM):
        stem = f"b{i:03d}-{i:04d}"
        save_rgb(os.path.join(bdd, "images", "10k", "val", stem + ".jpg"), th, tw, 30 + i, fmt="JPEG")
        save_palette(os.path.join(bdd, "labels", "sem_seg", "colormaps", "val", stem + ".png"),
                     label_map(th, tw, 30 + i))
    # Mapillary val, Rein/TLDR layout written by prepare_mapillary.py
    mv = os.path.join(root, "mapillary")
    for i in range(NUM):
        stem = f"v{i:05d}_vistas"
        save_rgb(os.path.join(mv, "validation", "images", stem + ".jpg"), th, tw, 40 + i, fmt="JPEG")
        save_gray(os.path.join(mv, "cityscapes_trainIdLabel", "val", "label", stem + ".png"), label_map(th, tw, 40 + i))
    # ACDC val, the four conditions
    for k, cond in enumerate(ACDC_CONDITIONS):
        for i in range(NUM):
            seq, stem = f"GOPR{475 + i:04d}", f"GOPR{475 + i:04d}_frame_{i:06d}"
            save_rgb(os.path.join(root, "acdc", "rgb_anon", cond, "val", seq, stem + "_rgb_anon.png"),
                     th, tw, 50 + 10 * k + i)
            save_gray(os.path.join(root, "acdc", "gt", cond, "val", seq, stem + "_gt_labelTrainIds.png"),
                      label_map(th, tw, 50 + 10 * k + i))
    return root


def train_spm_model(path: str) -> str:
    """Train a SentencePiece model (vocabulary 40, EOS id 1) on the class names and write it to ``path``."""
    import sentencepiece as spm

    corpus = ["road sidewalk building wall fence pole traffic light traffic sign vegetation terrain sky person "
              "rider car truck bus train motorcycle bicycle"] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=40, pad_id=0,
                                   eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path
