"""Losses of the MFuser head (docs/reference.md, "Losses").

* :class:`MFuserCriterion`: fixed assignment query k <-> class k (tqdm's ``IdentityAssigner``, no
  Hungarian matching); class cross-entropy over all queries; sigmoid BCE + Dice on
  importance-sampled points of each matched mask (PointRend / Mask2Former sampling from
  ``detectron2.projects.point_rend.point_features``); deep supervision over every prediction set.
* :func:`score_map_loss`: the pixel-text alignment loss (DenseCLIP / tqdm "score map").

Ignore pixels (``ignore_label``, also the padding label of detectron2 mappers) in the mask losses:
the official code's ``ToMask`` (like Mask2Former's mapper) drops 255 from the class list and leaves
those pixels 0 in every binary mask, so they act as negatives for all K queries. That is the default
(``mask_ignore_as_background=True``). With ``mask_ignore_as_background=False`` (this project's
alternative) they are *excluded*:

* every sampled point carries a weight = bilinear sample of the valid (!= ignore) map, i.e. the
  fraction of valid pixels around it; points inside ignore regions get weight 0;
* its label is the bilinear sample of the class mask renormalised over the valid neighbours;
* BCE is the weighted mean over the points of a mask, Dice uses the weighted sums;
* importance sampling ranks only points whose neighbourhood at mask resolution contains a valid
  pixel, so the point budget is not spent on unlabelled regions.

Hence predictions inside ignore regions (and the padding of a batch) do not change the loss, and
the model is not taught to predict "no class" on unlabelled pixels.

``pred_masks`` (B, K, h, w) and ``sem_seg`` (B, H, W) must cover the same field of view (the
padded input image; h = H / 4 when H is divisible by 4): points are sampled in normalised [0, 1]
coordinates on both.

Precision: both losses are computed in float32 also under bf16 / fp16 autocast (autocast is switched off inside
and the predictions are cast up): the cross-entropies, the point sampling, the Dice sums over 12544 points and
the cosine score map would otherwise run partly in bf16 (8-bit mantissa). Gradients flow back through the casts
to the bf16 activations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import get_uncertain_point_coords_with_randomness, point_sample
from detectron2.utils import comm
from torch import nn

from mfuser.layers.amp import float32_region, to_float32

__all__ = ["MFuserCriterion", "score_map_loss"]


def _uncertainty_with_validity(point_values: torch.Tensor) -> torch.Tensor:
    """(N, 2, P) [logit, valid fraction] -> (N, 1, P) uncertainty -|logit|, -inf where no valid pixel is near."""
    unc = -point_values[:, :1].abs()
    return unc.masked_fill(point_values[:, 1:] <= 0, float("-inf"))


def _mask_uncertainty(point_logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, P) logits -> (N, 1, P) uncertainty -|logit| (Mask2Former's ``calculate_uncertainty``)."""
    return -point_logits.abs()


class MFuserCriterion(nn.Module):
    """Fixed-assignment set criterion of tqdm / MFuser.

    Args:
        num_classes: K (queries = classes).
        class_weight, mask_weight, dice_weight: loss weights (2, 5, 5); the returned losses are already weighted.
        no_object_weight: CE class weight of the no-object label K (the K real classes weigh 1).
        num_points: points sampled per matched mask (112 * 112).
        oversample_ratio, importance_sample_ratio: PointRend importance sampling parameters.
        ignore_label: label of unlabelled / padded pixels in ``sem_seg``.
        deep_supervision: also compute the losses of every ``aux_outputs`` set (suffix ``_i``).
        mask_ignore_as_background: treat ignore pixels as negatives of every mask (True, the official code) or
            exclude them from the mask losses (False; see the module docstring).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        ignore_label: int = 255,
        deep_supervision: bool = True,
        mask_ignore_as_background: bool = True,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_label < num_classes:
            raise ValueError(f"ignore_label {ignore_label} collides with a class index (num_classes={num_classes})")
        self.num_classes = num_classes
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.ignore_label = ignore_label
        self.deep_supervision = deep_supervision
        self.mask_ignore_as_background = mask_ignore_as_background
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    # ------------------------------------------------------------------ targets
    @torch.no_grad()
    def _targets(self, sem_seg: torch.Tensor):
        """sem_seg (B, H, W) -> target_classes (B, K) long, matched (B, K) bool, valid (B, 1, H, W) float."""
        K = self.num_classes
        valid = sem_seg != self.ignore_label
        labels = sem_seg[valid]
        if labels.numel() and (labels.min() < 0 or labels.max() >= K):
            bad = torch.unique(labels[(labels < 0) | (labels >= K)])[:10].tolist()
            raise ValueError(
                f"sem_seg contains labels {bad} outside [0, {K}) and != ignore_label {self.ignore_label}"
            )
        B = sem_seg.shape[0]
        present = torch.zeros(B, K + 1, dtype=torch.bool, device=sem_seg.device)
        idx = torch.where(valid, sem_seg, torch.full_like(sem_seg, K)).long().flatten(1)
        present.scatter_(1, idx, True)
        matched = present[:, :K]
        classes = torch.arange(K, device=sem_seg.device).expand(B, K)
        target_classes = torch.where(matched, classes, torch.full_like(classes, K))
        return target_classes, matched, valid[:, None].float()

    # ------------------------------------------------------------------ losses
    def loss_labels(self, pred_logits: torch.Tensor, target_classes: torch.Tensor) -> torch.Tensor:
        """Weighted-mean CE over all B*K queries (weights 1 for classes, no_object_weight for K)."""
        return F.cross_entropy(pred_logits.transpose(1, 2).float(), target_classes, self.empty_weight)

    def loss_masks(self, pred_masks, sem_seg, matched, valid, num_masks):
        """Point-sampled BCE and Dice of the matched (image, class) pairs, each summed and divided by num_masks."""
        b_idx, k_idx = matched.nonzero(as_tuple=True)
        if b_idx.numel() == 0:
            zero = pred_masks.sum() * 0.0
            return zero, zero
        src = pred_masks[b_idx, k_idx][:, None].float()  # (N, 1, h, w)
        with torch.no_grad():
            tgt = (sem_seg[b_idx] == k_idx[:, None, None]).float()[:, None]  # (N, 1, H, W)
            if self.mask_ignore_as_background:
                coords = get_uncertain_point_coords_with_randomness(
                    src, _mask_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
                )
                labels = point_sample(tgt, coords, align_corners=False).squeeze(1)
                weights = torch.ones_like(labels)
            else:
                valid_n = valid[b_idx]  # (N, 1, H, W)
                valid_coarse = F.adaptive_avg_pool2d(valid_n, src.shape[-2:])
                coords = get_uncertain_point_coords_with_randomness(
                    torch.cat([src, valid_coarse], 1), _uncertainty_with_validity, self.num_points,
                    self.oversample_ratio, self.importance_sample_ratio,
                )
                weights = point_sample(valid_n, coords, align_corners=False).squeeze(1)
                labels = point_sample(tgt, coords, align_corners=False).squeeze(1)
                labels = torch.where(weights > 0, labels / weights.clamp(min=1e-12), torch.zeros_like(labels))
                labels = labels.clamp(0.0, 1.0)
        logits = point_sample(src, coords, align_corners=False).squeeze(1)  # (N, P)

        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        loss_mask = ((bce * weights).sum(1) / weights.sum(1).clamp(min=1e-6)).sum() / num_masks
        probs = logits.sigmoid() * weights
        numerator = 2 * (probs * labels).sum(1)
        denominator = probs.sum(1) + (labels * weights).sum(1)
        loss_dice = (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks
        return loss_mask, loss_dice

    def _num_masks(self, matched: torch.Tensor) -> torch.Tensor:
        num = torch.as_tensor([float(matched.sum())], dtype=torch.float, device=matched.device)
        world = comm.get_world_size()
        if world > 1:
            torch.distributed.all_reduce(num)
        return torch.clamp(num / world, min=1).item()

    def forward(self, outputs: dict, sem_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            outputs: the head's dict: "pred_logits" (B, K, K+1), "pred_masks" (B, K, h, w), optional
                "aux_outputs" list of dicts with the same keys.
            sem_seg: (B, H, W) long, values in [0, K) or ignore_label (padded image resolution).

        Returns:
            {"loss_ce", "loss_mask", "loss_dice"} for the top-level set and, with deep supervision,
            {"loss_ce_i", "loss_mask_i", "loss_dice_i"} for aux_outputs[i]; weighted scalars.
        """
        pred_logits = outputs["pred_logits"]
        B, K = pred_logits.shape[:2]
        if K != self.num_classes or pred_logits.shape[2] != K + 1:
            raise ValueError(
                f"pred_logits must be (B, {self.num_classes}, {self.num_classes + 1}), got {tuple(pred_logits.shape)}"
            )
        if sem_seg.dim() != 3 or sem_seg.shape[0] != B:
            raise ValueError(f"sem_seg must be (B={B}, H, W), got {tuple(sem_seg.shape)}")
        if sem_seg.is_floating_point():
            raise ValueError(f"sem_seg must be an integer tensor, got {sem_seg.dtype}")
        with float32_region(pred_logits.device.type):  # see "Precision" in the module docstring
            return self._losses(to_float32(outputs), sem_seg)

    def _losses(self, outputs: dict, sem_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        target_classes, matched, valid = self._targets(sem_seg)
        num_masks = self._num_masks(matched)

        sets = [("", outputs)]
        if self.deep_supervision:
            sets += [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        losses = {}
        for suffix, out in sets:
            loss_mask, loss_dice = self.loss_masks(out["pred_masks"], sem_seg, matched, valid, num_masks)
            losses["loss_ce" + suffix] = self.class_weight * self.loss_labels(out["pred_logits"], target_classes)
            losses["loss_mask" + suffix] = self.mask_weight * loss_mask
            losses["loss_dice" + suffix] = self.dice_weight * loss_dice
        return losses


def score_map_loss(
    dense_emb: torch.Tensor,
    text: torch.Tensor,
    sem_seg: torch.Tensor,
    *,
    scale,
    bias=None,
    ignore_label: int = 255,
    avg_non_ignore: bool = False,
) -> torch.Tensor:
    """Pixel-text alignment loss (docs/reference.md, "Losses"): CE of the cosine score map against the labels.

    score[b, k] = scale * <dense[b] / |dense[b]|, text[b, k] / |text[b, k]|> + bias, bilinearly upsampled
    (align_corners=False) to the label size, softmax CE over the K classes with ``ignore_label``.

    Args:
        dense_emb: (B, Dt, h, w) dense visual embeddings in the text space.
        text: (B, K, Dt) (or (K, Dt), shared) class text embeddings.
        sem_seg: (B, H, W) long labels.
        scale: float or scalar tensor (1 / 0.07 for CLIP / EVA02; exp(logit_scale) for SigLIP).
        bias: optional float or scalar tensor (SigLIP's logit_bias).
        ignore_label: label whose pixels contribute 0.
        avg_non_ignore: divide the summed per-pixel CE by the number of labelled pixels (True) or by the number
            of all pixels, ignored ones included (False: the official code, mmseg's ``CrossEntropyLoss`` default
            ``avg_non_ignore=False``; the loss then weighs less in batches with much unlabelled area).

    Returns:
        scalar loss (unweighted); 0 (with a graph) when every pixel is ignored.
    """
    if dense_emb.dim() != 4:
        raise ValueError(f"dense_emb must be (B, Dt, h, w), got {tuple(dense_emb.shape)}")
    if text.dim() == 2:
        text = text[None].expand(dense_emb.shape[0], -1, -1)
    if text.dim() != 3 or text.shape[0] != dense_emb.shape[0] or text.shape[2] != dense_emb.shape[1]:
        raise ValueError(
            f"text must be (B={dense_emb.shape[0]}, K, Dt={dense_emb.shape[1]}), got {tuple(text.shape)}"
        )
    if sem_seg.dim() != 3 or sem_seg.shape[0] != dense_emb.shape[0]:
        raise ValueError(f"sem_seg must be (B={dense_emb.shape[0]}, H, W), got {tuple(sem_seg.shape)}")
    with float32_region(dense_emb.device.type):  # see "Precision" in the module docstring
        return _score_map_ce(to_float32(dense_emb), to_float32(text), sem_seg, to_float32(scale), to_float32(bias),
                             ignore_label, avg_non_ignore)


def _score_map_ce(dense_emb, text, sem_seg, scale, bias, ignore_label, avg_non_ignore):
    score = torch.einsum("bchw,bkc->bkhw", F.normalize(dense_emb, dim=1), F.normalize(text, dim=2)) * scale
    if bias is not None:
        score = score + bias
    score = F.interpolate(score, size=sem_seg.shape[-2:], mode="bilinear", align_corners=False)
    if not (sem_seg != ignore_label).any():
        return score.sum() * 0.0
    if avg_non_ignore:
        return F.cross_entropy(score.float(), sem_seg.long(), ignore_index=ignore_label)
    per_pixel = F.cross_entropy(score.float(), sem_seg.long(), ignore_index=ignore_label, reduction="none")
    return per_pixel.mean()
