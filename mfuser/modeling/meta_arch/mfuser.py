"""The MFuser meta-architecture: fusion backbone + enhanced text queries + Mask2Former-style head.

Reference: docs/reference.md, "The method as the official code computes it".
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN

from mfuser.layers.amp import float32_region, to_float32
from mfuser.modeling.heads import score_map_loss

__all__ = ["CLIP_MEAN_RGB", "DEFAULT_WINDOW_BATCH", "MFuser", "WINDOW_BATCH_BY_DEVICE", "semantic_inference",
           "window_starts"]

#: The OpenAI-CLIP mean colour (RGB, 0-255): the default ``pad_value``. The official pipeline pads with 0 after
#: its CLIP normalisation, i.e. with this colour before it, for every variant.
CLIP_MEAN_RGB = tuple(255.0 * m for m in OPENAI_DATASET_MEAN)

#: Windows per forward in sliding-window inference when ``window_batch_size`` is None ("per device"), by device
#: type; other devices use :data:`DEFAULT_WINDOW_BATCH`. The rule comes from ``tools/benchmark.py slide``
#: (docs/benchmarks.md, "Window batch per device"): on a CPU one 512 window already gives every matmul 1297 x 1024
#: rows or more per stream, so batching only adds memory traffic (1024 x 2048, 18 windows, full-size EVA02 model,
#: two threads: 183 s one window per forward, 207 s six per forward, in fp32; bf16 likewise, see the docs).
WINDOW_BATCH_BY_DEVICE = {"cpu": 1}
#: Windows per forward elsewhere (GPUs, where one window under-uses the device): the published value.
DEFAULT_WINDOW_BATCH = 6


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """Mask2Former semantic inference.

    Args:
        pred_logits: (N, Q, K+1) class logits (last = no-object).
        pred_masks: (N, Q, h, w) mask logits.

    Returns:
        (N, K, h, w): sum over queries of P(class) x sigmoid(mask), no-object dropped.
    """
    probs = F.softmax(pred_logits, dim=-1)[..., :-1]
    return torch.einsum("nqk,nqhw->nkhw", probs, pred_masks.sigmoid())


def _pad_image(images: torch.Tensor, height: int, width: int, pad_value: Sequence[float]) -> torch.Tensor:
    """Pad (N, 3, H, W) at the bottom/right to (height, width) with the colour ``pad_value`` (3 values, in the
    images' channel order: RGB)."""
    pad_h, pad_w = height - images.shape[-2], width - images.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return images
    out = images.new_empty(*images.shape[:-2], height, width)
    out[:] = torch.tensor(pad_value, dtype=images.dtype, device=images.device).view(3, 1, 1)
    out[..., : images.shape[-2], : images.shape[-1]] = images
    return out


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """mmseg-style window origins along one axis: every ``stride``, the last one flush with the end."""
    num = max(math.ceil((size - crop) / stride), 0) + 1
    return sorted({min(i * stride, size - crop) for i in range(num)})


class MFuser(nn.Module):
    """MFuser for semantic segmentation in Detectron2's formats.

    Built from LazyConfig files only (``configs/common/models/*.py``): its arguments are modules built by
    ``instantiate``, so it is deliberately not registered in detectron2's ``META_ARCH_REGISTRY`` (a yacs
    ``CfgNode`` could not describe them and ``detectron2.modeling.build_model(cfg)`` could not build it).

    Inputs: ``list[dict]``, each with
        * "image": uint8 (3, H, W) RGB tensor,
        * "sem_seg" (training): long (H, W) trainIds with ``ignore_label``,
        * "height", "width" (optional, inference): output size (the original image size),
        * "file_name" (optional): named in error messages.

    Outputs: in training a dict of scalar losses; in inference ``[{"sem_seg": (K, height, width)}]``
    holding per-class scores (softmax over classes without no-object times the sigmoid masks,
    averaged over overlapping windows; with ``score_softmax`` a softmax over the K classes of those).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: nn.Module,
        text_enhancer: nn.Module,
        head: nn.Module,
        criterion: nn.Module,
        class_names: Sequence[str],
        score_map_weight: float = 1.0,
        ignore_label: int = 255,
        inference_mode: str = "slide",
        crop_size: tuple[int, int] = (512, 512),
        stride: tuple[int, int] = (341, 341),
        window_batch_size: int | None = None,
        window_score_resize: str = "full",
        score_map_avg_non_ignore: bool = False,
        score_softmax: bool = False,
        pad_value: Sequence[float] = CLIP_MEAN_RGB,
    ):
        """
        Args:
            backbone: :class:`MFuserBackbone`.
            text_encoder: a text encoder, ``forward(class_names) -> (K, Dt)`` and
                ``score_calibration() -> (scale, bias | None)``.
            text_enhancer: :class:`MTEnhancer`, ``forward(text (K, Dt), visual (B, 1+hw, Dt)) -> (B, K, Dt)``.
            head: :class:`MFuserHead`, ``forward(features, text) -> {"pred_logits", "pred_masks", "aux_outputs"}``.
            criterion: :class:`MFuserCriterion`, ``forward(outputs, sem_seg) -> {loss_name: scalar}``.
            class_names: the K class names of the vocabulary (from dataset metadata ``stuff_classes``).
            score_map_weight: weight of the pixel-text score-map loss (reference: 1.0).
            ignore_label: label value ignored by the losses.
            inference_mode: "slide" (windows of ``crop_size`` every ``stride``, averaged) or "whole".
            crop_size, stride: (height, width) of the sliding windows (reference: 512, 341).
            window_batch_size: windows per forward pass in sliding-window inference; None (the default): per device,
                :data:`WINDOW_BATCH_BY_DEVICE` (1 on a CPU, measured) else :data:`DEFAULT_WINDOW_BATCH` (6).
            window_score_resize: how the head's 1/4-grid scores are mapped back onto an input whose size is
                not a multiple of the patch (a 512 px window with /14 encoders: 36x36 tokens cover 504 px).
                ``"full"`` (the official code): resize them to the whole input, stretching the covered 504 px
                over 512, and in training compare predictions with the labels of the whole crop.
                ``"covered"`` (this project's geometric choice): resize them to the covered 504 px and
                replicate-pad the uncovered border; in training, crop the labels to the covered area.
                Identical for /16 encoders on 512 px windows (everything is covered).
            score_map_avg_non_ignore: the pixel-text score-map loss is a mean over all pixels with ignored ones
                counting 0 (False, the official mmseg ``avg_non_ignore=False``) or over labelled pixels only
                (True).
            score_softmax: return ``softmax`` over the classes of the averaged scores, as the official
                ``inference()`` does before its argmax (True), instead of the averaged scores themselves (False,
                Mask2Former's semantic output). The argmax, hence every prediction and mIoU, is the same.
            pad_value: the colour (RGB, 0-255) training crops are padded with; the model pads its inputs (the
                batch in training, images smaller than a window in inference) with the same colour. The
                official pipeline pads with 0 after its CLIP normalisation, i.e. with the CLIP mean in RGB
                0-255 (:data:`CLIP_MEAN_RGB`, the default), for every variant; the model configs set it
                explicitly and the data mappers pad with the same colour.
        """
        super().__init__()
        if inference_mode not in ("slide", "whole"):
            raise ValueError(f"inference_mode must be 'slide' or 'whole'; got {inference_mode!r}")
        self.class_names = [str(c) for c in class_names]
        num_classes = getattr(criterion, "num_classes", len(self.class_names))
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names {self.class_names} but the criterion/head are built for "
                f"{num_classes} classes; set num_classes to the vocabulary size in the config"
            )
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.text_enhancer = text_enhancer
        self.head = head
        self.criterion = criterion
        self.score_map_weight = score_map_weight
        self.ignore_label = ignore_label
        self.inference_mode = inference_mode
        self.crop_size = tuple(crop_size)
        self.stride = tuple(stride)
        if window_batch_size is not None and int(window_batch_size) < 1:
            raise ValueError(f"window_batch_size must be >= 1 or None (per device); got {window_batch_size!r}")
        self.window_batch_size = None if window_batch_size is None else int(window_batch_size)
        if window_score_resize not in ("full", "covered"):
            raise ValueError(f"window_score_resize must be 'full' or 'covered'; got {window_score_resize!r}")
        self.window_score_resize = window_score_resize
        self.score_map_avg_non_ignore = bool(score_map_avg_non_ignore)
        self.score_softmax = bool(score_softmax)
        self.pad_value = tuple(float(v) for v in pad_value)
        if len(self.pad_value) != 3:
            raise ValueError(f"pad_value must be 3 values (RGB, 0-255); got {tuple(pad_value)}")
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def windows_per_forward(self, device: torch.device | None = None) -> int:
        """The window batch of sliding-window inference on ``device`` (default: the model's): ``window_batch_size``,
        or when it is None the per-device rule :data:`WINDOW_BATCH_BY_DEVICE`."""
        if self.window_batch_size is not None:
            return self.window_batch_size
        kind = (device if device is not None else self.device).type
        return WINDOW_BATCH_BY_DEVICE.get(kind, DEFAULT_WINDOW_BATCH)

    @property
    def checkpoint_optional_prefixes(self) -> tuple[str, ...]:
        """Frozen modules loaded from their official files: not stored in (nor required from) checkpoints.

        Frozen encoders that were *not* loaded from a file (random init: tests, the quickstart) are kept in
        checkpoints, because nothing else could rebuild them.
        """
        frozen = {"backbone.vfm.": self.backbone.vfm, "backbone.vlm.": self.backbone.vlm}
        if hasattr(self.text_encoder, "tower"):
            frozen["text_encoder.tower."] = self.text_encoder
        return tuple(p for p, m in frozen.items() if getattr(m, "load_report", None) is not None)

    # ---------------------------------------------------------------------------------------------
    def _images(self, batched_inputs: list[dict]) -> list[torch.Tensor]:
        images = []
        for i, x in enumerate(batched_inputs):
            img = x["image"]
            if img.dim() != 3 or img.shape[0] != 3:
                raise ValueError(
                    f"input {i} ({x.get('file_name', 'no file_name')}): 'image' must be a (3, H, W) RGB tensor; "
                    f"got shape {tuple(img.shape)}. Convert grayscale/RGBA images to RGB first "
                    "(the dataset mappers and tools/demo.py read images as RGB)."
                )
            images.append(img.to(self.device, non_blocking=True).float())
        return images

    def covered_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Pixels covered by the token grid (a /14 grid leaves a few rows/columns out)."""
        gh, gw = self.backbone.vfm.grid(hw)
        p = self.backbone.vfm.patch_size
        return gh * p, gw * p

    def class_embeddings(self) -> torch.Tensor:
        """(K, Dt) class embeddings; the text encoder caches them in eval mode."""
        return self.text_encoder(self.class_names)

    def forward_features(self, images: torch.Tensor, text: torch.Tensor):
        """Everything but the final resize, for callers that need the pieces (benchmarks, tests).

        Args:
            images: (N, 3, H, W) float RGB in 0..255.
            text: (K, Dt) class embeddings (:meth:`class_embeddings`).

        Returns:
            (head outputs ``{"pred_logits", "pred_masks", "aux_outputs"}``, dense embedding (N, Dt, h, w),
            enhanced text (N, K, Dt)).
        """
        features = self.backbone(images)
        global_emb, dense_emb = features.pop("embedding")
        visual = torch.cat([global_emb, dense_emb.flatten(2).transpose(1, 2)], dim=1)
        enhanced = self.text_enhancer(text, visual)
        return self.head(features, enhanced), dense_emb, enhanced

    def forward(self, batched_inputs: list[dict]):
        if self.training:
            return self.forward_train(batched_inputs)
        return self.inference(batched_inputs)

    def forward_train(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        images = self._images(batched_inputs)
        targets = []
        for i, (x, img) in enumerate(zip(batched_inputs, images)):
            if "sem_seg" not in x:
                raise ValueError(f"training input {i} ({x.get('file_name', 'no file_name')}) has no 'sem_seg'")
            seg = x["sem_seg"]
            if tuple(seg.shape) != tuple(img.shape[-2:]):
                raise ValueError(
                    f"training input {i} ({x.get('file_name', 'no file_name')}): sem_seg of size "
                    f"{tuple(seg.shape)} does not match the image size {tuple(img.shape[-2:])}"
                )
            targets.append(seg.to(self.device))
        # No rounding to a multiple of the patch: the grid covers what it covers (36x36 tokens of a 512 crop
        # for /14 encoders, as published); window_score_resize decides which labels the predictions meet.
        height = max(img.shape[-2] for img in images)
        width = max(img.shape[-1] for img in images)
        batch = torch.cat([_pad_image(img[None], height, width, self.pad_value) for img in images])
        sem_seg = torch.full((len(images), height, width), self.ignore_label, dtype=torch.long, device=self.device)
        for i, seg in enumerate(targets):
            sem_seg[i, : seg.shape[0], : seg.shape[1]] = seg
        outputs, dense_emb, enhanced = self.forward_features(batch, self.class_embeddings())
        if self.window_score_resize == "covered":
            ch, cw = self.covered_size((height, width))
            sem_seg = sem_seg[:, :ch, :cw]
        losses = self.criterion(outputs, sem_seg)
        if self.score_map_weight > 0:
            scale, bias = self.text_encoder.score_calibration()
            losses["loss_score_map"] = self.score_map_weight * score_map_loss(
                dense_emb, enhanced, sem_seg, scale=scale, bias=bias, ignore_label=self.ignore_label,
                avg_non_ignore=self.score_map_avg_non_ignore,
            )
        return losses

    # ---------------------------------------------------------------------------------------------
    def predict_windows(self, windows: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, K, H, W) float32 class scores, resized as ``window_score_resize`` says.

        Under autocast the network runs in bf16 / fp16, but the scores are formed from its logits and mask logits
        in float32: rounded to bf16 (8-bit mantissa), close class scores would tie or swap in the argmax.
        """
        outputs, _, _ = self.forward_features(windows, text)
        with float32_region(windows.device.type):
            return self._window_scores(to_float32(outputs["pred_logits"]), to_float32(outputs["pred_masks"]),
                                       tuple(windows.shape[-2:]))

    def _window_scores(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, hw: tuple[int, int]):
        scores = semantic_inference(pred_logits, pred_masks)
        if self.window_score_resize == "full":
            return F.interpolate(scores, size=hw, mode="bilinear", align_corners=False)
        ch, cw = self.covered_size(hw)
        scores = F.interpolate(scores, size=(ch, cw), mode="bilinear", align_corners=False)
        if (ch, cw) != hw:
            scores = F.pad(scores, (0, hw[1] - cw, 0, hw[0] - ch), mode="replicate")
        return scores

    def _whole_inference(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        # images smaller than a crop are padded to it, exactly as in sliding-window mode
        ph, pw = max(h, self.crop_size[0]), max(w, self.crop_size[1])
        return self.predict_windows(_pad_image(image[None], ph, pw, self.pad_value), text)[..., :h, :w]

    def _slide_inference(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        (crop_h, crop_w), (stride_h, stride_w) = self.crop_size, self.stride
        ph, pw = max(h, crop_h), max(w, crop_w)
        padded = _pad_image(image[None], ph, pw, self.pad_value)
        origins = list(itertools.product(window_starts(ph, crop_h, stride_h), window_starts(pw, crop_w, stride_w)))
        scores = padded.new_zeros(1, self.num_classes, ph, pw)
        counts = padded.new_zeros(1, 1, ph, pw)
        per_forward = self.windows_per_forward(image.device)
        for start in range(0, len(origins), per_forward):
            chunk = origins[start : start + per_forward]
            windows = torch.cat([padded[..., y : y + crop_h, x : x + crop_w] for y, x in chunk])
            window_scores = self.predict_windows(windows, text)
            for (y, x), s in zip(chunk, window_scores):
                scores[0, :, y : y + crop_h, x : x + crop_w] += s
                counts[..., y : y + crop_h, x : x + crop_w] += 1
        return (scores / counts)[..., :h, :w]

    @torch.no_grad()
    def inference(self, batched_inputs: list[dict]) -> list[dict]:
        text = self.class_embeddings()
        predict = self._slide_inference if self.inference_mode == "slide" else self._whole_inference
        results = []
        for x, image in zip(batched_inputs, self._images(batched_inputs)):
            scores = predict(image, text)
            out_hw = (int(x.get("height", image.shape[-2])), int(x.get("width", image.shape[-1])))
            if out_hw != tuple(scores.shape[-2:]):
                scores = F.interpolate(scores, size=out_hw, mode="bilinear", align_corners=False)
            if self.score_softmax:
                scores = scores.softmax(dim=1)
            results.append({"sem_seg": scores[0]})
        return results
