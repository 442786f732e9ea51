"""Tiny dataset trees in each published layout, generated in a temporary folder for the tests."""

import os
import shutil

import cv2
import numpy as np
from PIL import Image

from mfuser.data.classes import CITYSCAPES_COLORS, CITYSCAPES_ID_TO_TRAINID, SYNTHIA_ID_TO_TRAINID

CS_IDS = sorted(CITYSCAPES_ID_TO_TRAINID)  # the 19 evaluated Cityscapes ids


def save_rgb(path, h, w, seed=0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format=fmt)


def save_gray(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


def save_palette(path, arr, palette=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    pal = palette or [v for c in CITYSCAPES_COLORS for v in c]
    img.putpalette(pal + [0] * (768 - len(pal)))
    img.save(path)


def blocks(h, w, values, seed=0):
    """(h, w) label made of vertical stripes of the given values (every value present)."""
    rng = np.random.default_rng(seed)
    vals = list(values)
    out = np.zeros((h, w), np.int64)
    bounds = np.linspace(0, w, len(vals) + 1).astype(int)
    for v, a, b in zip(rng.permutation(vals), bounds[:-1], bounds[1:]):
        out[:, a:b] = v
    return out


def make_cityscapes(root, splits=("train", "val"), n=2, h=32, w=64, train_ids=False):
    for split in splits:
        for i in range(n):
            city = "aachen" if split == "train" else "frankfurt"
            stem = f"{city}_{i:06d}_000019"
            save_rgb(os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"), h, w, i)
            ids = blocks(h, w, CS_IDS + [0, 1], seed=i)
            save_gray(os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png"), ids)
            if train_ids:
                lut = np.full(256, 255, np.uint8)
                for k, v in CITYSCAPES_ID_TO_TRAINID.items():
                    lut[k] = v
                save_gray(os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelTrainIds.png"), lut[ids])
    return root


def make_gta5(root, n=3, h=24, w=40, mismatch=(1,)):
    """GTA5 tree; labels of the images in ``mismatch`` are 2 px larger than their image."""
    for i in range(n):
        stem = f"{i + 1:05d}"
        save_rgb(os.path.join(root, "images", stem + ".png"), h, w, i)
        lh, lw = (h + 2, w + 2) if i in mismatch else (h, w)
        save_gray(os.path.join(root, "labels", stem + ".png"), blocks(lh, lw, CS_IDS, seed=i))
    return root


def make_synthia(root, n=2, h=20, w=38, nested=False):
    base = os.path.join(root, "RAND_CITYSCAPES") if nested else root
    for i in range(n):
        stem = f"{i:07d}"
        save_rgb(os.path.join(base, "RGB", stem + ".png"), h, w, i)
        ids = blocks(h, w, list(SYNTHIA_ID_TO_TRAINID) + [0, 13, 22], seed=i)
        raw = np.zeros((h, w, 3), np.uint16)
        raw[..., 2] = ids  # class id in R (OpenCV's BGR order)
        raw[..., 1] = 1000 + i  # instance id in G must be ignored
        path = os.path.join(base, "GT", "LABELS", stem + ".png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        assert cv2.imwrite(path, raw)
    return root


def make_bdd100k(root, split="val", n=2, h=18, w=30, layout="masks"):
    for i in range(n):
        stem = f"b{i:03d}-{i:04d}"
        save_rgb(os.path.join(root, "images", "10k", split, stem + ".jpg"), h, w, i, fmt="JPEG")
        lab = blocks(h, w, list(range(19)) + [255], seed=i)
        path = os.path.join(root, "labels", "sem_seg", layout, split, stem + ".png")
        if layout == "masks":
            save_gray(path, lab)
        elif layout == "colormaps":
            save_palette(path, lab)
        else:  # RGB colour-coded
            os.makedirs(os.path.dirname(path), exist_ok=True)
            colors = np.array(list(CITYSCAPES_COLORS) + [(0, 0, 0)] * 237, np.uint8)
            Image.fromarray(colors[np.where(lab == 255, 19, lab)]).save(path)
    return root


def make_mapillary_raw(root, splits=("training", "validation"), n=2, h=16, w=28, v12=True):
    """Vistas-like tree: images + palette labels whose indices are the 66 Vistas ids."""
    for split in splits:
        for i in range(n):
            stem = f"{split[:1]}{i:05d}_vistas"
            save_rgb(os.path.join(root, split, "images", stem + ".jpg"), h, w, i, fmt="JPEG")
            lab_dir = os.path.join(root, split, "v1.2", "labels") if v12 else os.path.join(root, split, "labels")
            rng = np.random.default_rng(i)
            pal = rng.integers(0, 256, 66 * 3).tolist()  # colours unrelated to the ids
            save_palette(os.path.join(lab_dir, stem + ".png"), blocks(h, w, range(66), seed=i), palette=pal)
    return root


def copy_tree(src, dst):
    shutil.copytree(src, dst)
    for dirpath, _, files in os.walk(dst):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return dst
