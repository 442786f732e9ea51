"""Dataset mappers: dataset dict -> model input (detectron2's ``DatasetMapper`` role, for semantic segmentation).

Training (:class:`MFuserSemanticDatasetMapper` with :func:`build_train_augmentations`) follows the official
recipe (docs/reference.md, "Training recipe"): resize by a random ratio 0.5-2.0 of the native size, 512x512
crop with category-max-ratio 0.75, horizontal flip (p=0.5), photometric distortion, pad to the crop size with
label 255 and the image colour :data:`~mfuser.data.transforms.IMAGE_PAD_RGB` (the CLIP mean). Normalisation is
left to the model (each encoder normalises its own stream).

Rare-class sampling: when a dataset dict carries ``"rcs_class": c`` (set by
:class:`mfuser.data.samplers.RareClassDataset` for indices drawn by :class:`~mfuser.data.samplers.RareClassSampler`),
the augmentations are redrawn up to ``rcs_max_redraws`` times until the crop holds more than
``rcs_min_crop_pixels`` pixels of class ``c`` (official: 10 redraws, 3000 * 0.5 = 1500 pixels); the last
draw is kept otherwise.
"""

import copy
import logging
from typing import List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .classes import IGNORE_LABEL, NUM_CLASSES
from .labels import check_label_format, read_label
from .transforms import IMAGE_PAD_RGB, PadToSize, PhotoMetricDistortion, ResizeByRatio, ResizeKeepRatio

__all__ = ["build_train_augmentations", "MFuserSemanticDatasetMapper", "MFuserTestDatasetMapper", "read_image_checked"]

logger = logging.getLogger(__name__)


def build_train_augmentations(
    crop_size: Tuple[int, int] = (512, 512),
    ratio_range: Tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip: bool = True,
    photometric: bool = True,
    *,
    ignore_label: int = IGNORE_LABEL,
    image_format: str = "RGB",
) -> List[T.Augmentation]:
    """The reference training augmentations as a list of detectron2 ``Augmentation``s.

    Order (as in the published mmseg pipeline): ResizeByRatio -> RandomCrop_CategoryAreaConstraint
    (absolute ``crop_size``, no class above ``cat_max_ratio`` of the non-ignored crop pixels, up to 10 tries)
    -> RandomFlip -> PhotoMetricDistortion -> PadToSize(crop_size, image :data:`IMAGE_PAD_RGB` rounded, in
    ``image_format`` channel order; label ``ignore_label``).

    Args:
        crop_size: (height, width) of the crop.
        ratio_range: resize ratio range relative to the native image size; None to skip resizing.
        cat_max_ratio: 1.0 disables the category constraint.
    """
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    if min(crop_size) <= 0:
        raise ValueError(f"crop_size: expected positive (height, width), got {crop_size}")
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format: the training augmentations support 'RGB' or 'BGR', got {image_format!r}")
    augs: List[T.Augmentation] = []
    if ratio_range is not None:
        augs.append(ResizeByRatio(tuple(ratio_range)))
    augs.append(
        T.RandomCrop_CategoryAreaConstraint(
            "absolute", crop_size, single_category_max_area=cat_max_ratio, ignored_category=ignore_label
        )
    )
    if flip:
        augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
    if photometric:
        augs.append(PhotoMetricDistortion(image_format=image_format))
    pad_rgb = IMAGE_PAD_RGB if image_format == "RGB" else IMAGE_PAD_RGB[::-1]
    augs.append(PadToSize(crop_size, pad_value=pad_rgb, seg_pad_value=ignore_label))
    return augs


def read_image_checked(file_name: str, image_format: str = "RGB") -> np.ndarray:
    """detectron2's ``read_image`` with an error naming the file when it is missing or cannot be decoded."""
    try:
        return utils.read_image(file_name, format=image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except Exception as e:
        raise ValueError(f"Cannot decode image {file_name}: {type(e).__name__}: {e}") from e


def _to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class MFuserSemanticDatasetMapper:
    """Map a semantic-segmentation dataset dict to a training sample.

    Input dict: ``file_name``, ``sem_seg_file_name``, optional ``height``/``width`` (checked against the
    image), optional ``label_format`` (overrides the mapper's), optional ``rcs_class``. The label must have
    exactly the image's height and width and only the values of its format
    (:func:`mfuser.data.labels.read_label`); otherwise :class:`~mfuser.data.labels.LabelError` names both files.

    Output dict::

        {"image": uint8 tensor (3, H, W), "sem_seg": int64 tensor (H, W) of trainIds / ignore,
         "height": H, "width": W, "file_name": str}

    where (H, W) is the size after augmentation (the crop size in training).
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Sequence[T.Augmentation],
        image_format: str = "RGB",
        ignore_label: int = IGNORE_LABEL,
        label_format="trainid",
        num_classes: int = NUM_CLASSES,
        rcs_min_crop_pixels: int = 1500,
        rcs_max_redraws: int = 10,
        decoded_cache_mb: float = 0,
    ):
        """
        Args:
            is_train: training mapper (the augmentations are applied; always True in practice).
            augmentations: detectron2 augmentations, e.g. :func:`build_train_augmentations`.
            image_format: "RGB" or "BGR", the channel order of the output image.
            ignore_label: must be 255 (``IGNORE_LABEL``).
            label_format: default label encoding of the dataset dicts (:func:`mfuser.data.labels.read_label`).
            num_classes: number of trainId classes.
            rcs_min_crop_pixels, rcs_max_redraws: rare-class crop redraws (see the module docstring).
            decoded_cache_mb: keep up to this many MiB of decoded, checked (image, label) pairs in memory and
                reuse them instead of decoding the files again; 0 (the default) decodes every time. For small
                datasets read many times, e.g. the quickstart's 400 source images (about 200 MiB decoded, each
                read about 10 times; PNG decoding was about half of loading a batch). The cache fills in the
                order the samples come and keeps them (no eviction); each loader worker process holds its own.
                Cached arrays are read-only, so an augmentation that writes into its input fails loudly instead
                of changing later samples.
        """
        if ignore_label != IGNORE_LABEL:
            raise ValueError(
                f"ignore_label: mfuser labels use {IGNORE_LABEL} for ignored pixels (read_label enforces it), "
                f"got {ignore_label}"
            )
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.label_format = check_label_format(label_format)
        self.num_classes = num_classes
        self.rcs_min_crop_pixels = rcs_min_crop_pixels
        self.rcs_max_redraws = rcs_max_redraws
        if decoded_cache_mb < 0:
            raise ValueError(f"decoded_cache_mb must be >= 0 (0 disables the cache), got {decoded_cache_mb}")
        self._cache_budget = int(decoded_cache_mb * 2**20)
        self._cache_used = 0
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        logger.info(f"[MFuserSemanticDatasetMapper] augmentations ({'train' if is_train else 'test'}): {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        """From a yacs config: ``INPUT.FORMAT``, ``INPUT.CROP.SIZE`` (default 512x512) and the metadata of
        ``DATASETS.TRAIN[0]`` (ignore label, label format, number of classes)."""
        crop = tuple(cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else (512, 512)
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        ignore = meta.get("ignore_label", IGNORE_LABEL)
        augs = build_train_augmentations(crop, ignore_label=ignore, image_format=cfg.INPUT.FORMAT) if is_train else []
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": ignore,
            "label_format": meta.get("label_format", "trainid"),
            "num_classes": len(meta.get("stuff_classes", [None] * NUM_CLASSES)),
        }

    def _read(self, file_name: str, label_file: str, label_format) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image (H, W, 3) uint8 and its checked label (H, W), from the cache when it holds them."""
        key = (file_name, label_file, repr(label_format)) if self._cache_budget else None  # a format may be a dict
        if key in self._cache:
            return self._cache[key]
        image = read_image_checked(file_name, self.image_format)
        # the label must have exactly the image's height and width and only its format's values (LabelError)
        sem_seg = read_label(label_file, label_format, self.num_classes, image_file=file_name,
                             image_size=image.shape[:2])
        size = image.nbytes + sem_seg.nbytes
        if key is not None and self._cache_used + size <= self._cache_budget:
            image.setflags(write=False)
            sem_seg.setflags(write=False)
            self._cache[key] = (image, sem_seg)
            self._cache_used += size
        return image, sem_seg

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(f"MFuserSemanticDatasetMapper: the dataset dict of {file_name} has no 'sem_seg_file_name'")
        label_file = dataset_dict.pop("sem_seg_file_name")
        image, sem_seg = self._read(file_name, label_file, dataset_dict.pop("label_format", self.label_format))
        utils.check_image_size(dataset_dict, image)
        rcs_class = dataset_dict.pop("rcs_class", None)
        tries = 1 + (self.rcs_max_redraws if rcs_class is not None else 0)
        for _ in range(tries):
            aug_input = T.AugInput(image, sem_seg=sem_seg)
            self.augmentations(aug_input)
            out_image, out_seg = aug_input.image, aug_input.sem_seg
            if rcs_class is None or int((out_seg == rcs_class).sum()) > self.rcs_min_crop_pixels:
                break
        dataset_dict["image"] = _to_chw_uint8(out_image)
        dataset_dict["sem_seg"] = torch.as_tensor(out_seg.astype(np.int64))
        dataset_dict["height"], dataset_dict["width"] = out_image.shape[:2]
        return dataset_dict


class MFuserTestDatasetMapper:
    """Map a dataset dict to an inference input.

    Reads the image and, if ``resize_to=(long, short)`` is given, resizes it keeping the aspect ratio so that
    the long side fits ``long`` and the short side fits ``short`` (mmseg ``Resize(img_scale, keep_ratio=True)``,
    e.g. ``(2048, 1024)``; :class:`~mfuser.data.transforms.ResizeKeepRatio`, also used by the demo). Output::

        {"image": uint8 tensor (3, h, w) (resized), "height": H, "width": W (ORIGINAL size),
         "file_name": str, ...other keys of the input dict}

    The model returns its prediction at (height, width), the size of the ground truth.
    """

    @configurable
    def __init__(self, *, resize_to: Tuple[int, int] | None = None, image_format: str = "RGB"):
        self.resize = ResizeKeepRatio(resize_to)
        self.resize_to = self.resize.scale
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg):
        return {"resize_to": None, "image_format": cfg.INPUT.FORMAT}

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], self.image_format)
        utils.check_image_size(dataset_dict, image)
        h, w = image.shape[:2]
        image = self.resize.get_transform(image).apply_image(image)
        dataset_dict["image"] = _to_chw_uint8(image)
        dataset_dict["height"], dataset_dict["width"] = h, w
        return dataset_dict
