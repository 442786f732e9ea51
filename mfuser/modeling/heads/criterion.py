"""Losses of the MFuser head (docs/reference.md, "Losses").

* :class:`MFuserCriterion`: fixed assignment query k <-> class k (tqdm's ``IdentityAssigner``, no
  Hungarian matching); class cross-entropy over all queries; sigmoid BCE + Dice on
  importance-sampled points of each matched mask (the PointRend / Mask2Former sampling of
  ``detectron2.projects.point_rend.point_features``, run for all prediction sets in one batched pass);
  deep supervision over every prediction set.
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
from detectron2.utils import comm
from torch import nn

from mfuser.layers.amp import float32_region, to_float32

__all__ = ["MFuserCriterion", "score_map_loss"]


def _sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) maps, (N, P, 2) points in grid_sample's [-1, 1] coordinates -> (N, C, P) bilinear samples.

    detectron2's ``point_sample`` (align_corners=False, zero padding) on the points (grid + 1) / 2 of [0, 1]^2,
    without its 2 * coords - 1 pass: the criterion draws its points in [-1, 1) directly.
    """
    return F.grid_sample(input, grid[:, :, None], align_corners=False)[..., 0]


def _uniform_coordinates(n: int, device) -> torch.Tensor:
    """(n,) float32 coordinates uniform on [-1, 1) (``grid_sample``'s range), 16 bits of resolution each.

    detectron2 draws ``torch.rand`` u in [0, 1) and samples at 2 * u - 1. Here the points sit on the 2^16 cell
    centres ``(k + 0.5) / 2^15 - 1``, k uniform in [0, 2^16): the sampled maps (mask logits, targets at the crop
    size) have at most 512 pixels a side in the published recipe, so a point still lands anywhere inside a pixel
    to 1/128 of its width or finer. Why: PyTorch's CPU
    ``uniform_`` makes one generator call and a conversion per float, serially; one full-range int64 ``random_``
    gives four 16-bit coordinates (quickstart, 2.8 M coordinates per step, 2 threads: 10.3 ms -> about 3 ms).
    """
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    return bits.view(torch.int16)[:n].float().add_(0.5).mul_(2.0**-15)


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

    All prediction sets (the final one and the ``aux_outputs``) are handled in one batched pass: the matched
    (image, class) pairs and their target masks are built once, the points of the N matched masks of the S sets
    are drawn, ranked and sampled together and the per-set losses are sums over the (N, S) rows. Per mask and set
    this is the sampling of detectron2's ``get_uncertain_point_coords_with_randomness`` (``oversample_ratio *
    num_points`` uniform candidates, the ``importance_sample_ratio * num_points`` most uncertain of them, the rest
    uniform) and the losses are the same formulas as a loop over the sets. Only the drawing of the uniform
    coordinates differs: one draw for all sets, candidates and uniform points together, of 16-bit coordinates
    (:func:`_uniform_coordinates`), so a given seed gives other points than a per-set loop would.
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
        if oversample_ratio < 1:
            raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
        if not 0 <= importance_sample_ratio <= 1:
            raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
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
        bad = valid & ((sem_seg < 0) | (sem_seg >= K))
        if bad.any():
            labels = torch.unique(sem_seg[bad])[:10].tolist()
            raise ValueError(
                f"sem_seg contains labels {labels} outside [0, {K}) and != ignore_label {self.ignore_label}"
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
        """(S, B, K, K+1) logits of S sets -> (S,) weighted-mean CE of each set over its B*K queries.

        Weights 1 for the classes, no_object_weight for K: ``F.cross_entropy(logits, target, empty_weight)`` per set.
        """
        S = pred_logits.shape[0]
        target = target_classes.flatten().repeat(S)
        weighted_nll = F.cross_entropy(pred_logits.flatten(0, 2), target, self.empty_weight, reduction="none")
        return weighted_nll.view(S, -1).sum(1) / self.empty_weight[target_classes].sum()

    @torch.no_grad()
    def _point_grid(self, src: torch.Tensor, valid_coarse: torch.Tensor | None) -> torch.Tensor:
        """PointRend importance sampling of all (mask, set) rows at once.

        Args:
            src: (N, S, h, w) float32 mask logits of the N matched masks in the S sets.
            valid_coarse: (N, 1, h, w) fraction of valid pixels per mask cell, or None (ignore = background).

        Returns:
            (N * S, P, 2) points as ``grid_sample`` coordinates in [-1, 1) (= 2 * point_features coordinates - 1),
            row n * S + s for mask n of set s: the ``importance_sample_ratio * P`` most uncertain (smallest |logit|;
            with ``valid_coarse`` only where a valid pixel is near) of ``oversample_ratio * P`` uniform candidates,
            then the rest uniform.
        """
        N, S, h, w = src.shape
        rows = N * S
        num_uncertain = int(self.importance_sample_ratio * self.num_points)
        num_candidates = int(self.num_points * self.oversample_ratio) if num_uncertain else 0
        num_random = self.num_points - num_uncertain
        # One draw for every row, candidates first, then the uniform points (a per-set loop draws set by set).
        draw = _uniform_coordinates(rows * (num_candidates + num_random) * 2, src.device)
        pairs = draw.view(torch.int64)  # one (x, y) point as one 8-byte element: moved with a plain gather / cat
        uniform = pairs[rows * num_candidates:].view(rows, num_random)
        if num_uncertain == 0:
            return uniform.view(torch.float32).view(rows, num_random, 2)
        candidates = draw[: rows * num_candidates * 2].view(rows, num_candidates, 2)
        # uncertainty -|logit| (Mask2Former's calculate_uncertainty): the most uncertain are the smallest |logit|
        certainty = _sample(src.view(rows, 1, h, w), candidates).abs_()
        if valid_coarse is not None:
            # rows n * S .. n * S + S - 1 share the mask n: sample its valid map at their S * M points at once
            near_valid = _sample(valid_coarse, candidates.view(N, S * num_candidates, 2))
            certainty.masked_fill_(near_valid.view(rows, 1, num_candidates) <= 0, float("inf"))
        # the same set as detectron2's torch.topk(-|logit|, k) (up to the order of ties), found faster: unsorted (the
        # losses are sums over the points) and on the int32 bit patterns, which order non-negative floats (and +inf)
        # as their values
        idx = certainty[:, 0].view(torch.int32).topk(num_uncertain, dim=1, largest=False, sorted=False).indices
        uncertain = pairs[: rows * num_candidates].view(rows, num_candidates).gather(1, idx)
        if num_random > 0:
            uncertain = torch.cat([uncertain, uniform], 1)
        return uncertain.view(torch.float32).view(rows, self.num_points, 2)

    def loss_masks(self, pred_masks: list[torch.Tensor], sem_seg, matched, num_masks):
        """Point-sampled BCE and Dice of the matched (image, class) pairs of S prediction sets.

        Args:
            pred_masks: S tensors (B, K, h, w) (any float dtype; the matched masks are cast to float32).
            sem_seg: (B, H, W) labels; matched: (B, K) bool; num_masks: the normaliser.

        Returns:
            loss_mask, loss_dice: (S,) each; per set the BCE / Dice of its masks summed and divided by num_masks.
        """
        S = len(pred_masks)
        B, K, h, w = pred_masks[0].shape
        flat = matched.flatten().nonzero().squeeze(1)  # n -> b * K + k
        N = flat.numel()
        if N == 0:
            zero = torch.stack([m.float().sum() * 0.0 for m in pred_masks])
            return zero, zero
        # (N, S, h, w): row-major (mask, set), so that a mask's S sets are adjacent
        src = torch.stack([m.flatten(0, 1).index_select(0, flat) for m in pred_masks], 1).float()
        with torch.no_grad():
            b_idx, k_idx = flat.div(K, rounding_mode="floor"), flat.remainder(K)
            sem_n = sem_seg.index_select(0, b_idx)  # (N, H, W)
            tgt = sem_n == k_idx[:, None, None]
            if self.mask_ignore_as_background:
                grid = self._point_grid(src.detach(), None)
                tgt = tgt[:, None].float()  # (N, 1, H, W)
            else:
                valid = (sem_seg != self.ignore_label)[:, None].float()  # (B, 1, H, W)
                valid_coarse = F.adaptive_avg_pool2d(valid, (h, w)).index_select(0, b_idx)
                grid = self._point_grid(src.detach(), valid_coarse)
                tgt = torch.stack([tgt, sem_n != self.ignore_label], 1).float()  # (N, 2, H, W) [mask, valid]
            # the S sets of mask n sample its target at their S * P points in one row
            sampled = _sample(tgt, grid.view(N, S * self.num_points, 2))
            labels = sampled[:, 0].view(N, S, self.num_points)
            if not self.mask_ignore_as_background:
                weights = sampled[:, 1].view(N, S, self.num_points)
                labels = torch.where(weights > 0, labels / weights.clamp(min=1e-12), torch.zeros_like(labels))
                labels = labels.clamp(0.0, 1.0)
        logits = _sample(src.view(N * S, 1, h, w), grid).view(N, S, self.num_points)

        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        probs = logits.sigmoid()
        if self.mask_ignore_as_background:  # every weight is 1
            loss_mask = bce.mean(2)
            numerator = 2 * (probs * labels).sum(2)
            denominator = probs.sum(2) + labels.sum(2)
        else:
            loss_mask = (bce * weights).sum(2) / weights.sum(2).clamp(min=1e-6)
            probs = probs * weights
            numerator = 2 * (probs * labels).sum(2)
            denominator = probs.sum(2) + (labels * weights).sum(2)
        loss_dice = 1 - (numerator + 1) / (denominator + 1)
        return loss_mask.sum(0) / num_masks, loss_dice.sum(0) / num_masks

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
                "aux_outputs" list of dicts with the same keys and shapes.
            sem_seg: (B, H, W) long, values in [0, K) or ignore_label (padded image resolution).

        Returns:
            {"loss_ce", "loss_mask", "loss_dice"} for the top-level set and, with deep supervision,
            {"loss_ce_i", "loss_mask_i", "loss_dice_i"} for aux_outputs[i]; weighted float32 scalars.
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
        sets = [("", outputs)]
        if self.deep_supervision:
            sets += [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        mask_shape = outputs["pred_masks"].shape
        for suffix, out in sets:
            if out["pred_logits"].shape != pred_logits.shape or out["pred_masks"].shape != mask_shape \
                    or len(mask_shape) != 4 or mask_shape[:2] != (B, K):
                raise ValueError(
                    f"prediction set {suffix or 'final'}: pred_logits {tuple(out['pred_logits'].shape)} / "
                    f"pred_masks {tuple(out['pred_masks'].shape)}; every set must have pred_logits "
                    f"{tuple(pred_logits.shape)} and pred_masks (B={B}, K={K}, h, w) of one size"
                )
        with float32_region(pred_logits.device.type):  # see "Precision" in the module docstring
            return self._losses([out for _, out in sets], [suffix for suffix, _ in sets], sem_seg)

    def _losses(self, sets: list[dict], suffixes: list[str], sem_seg: torch.Tensor) -> dict[str, torch.Tensor]:
        target_classes, matched, _ = self._targets(sem_seg)
        num_masks = self._num_masks(matched)
        # float32 casts after stacking / selecting: only the matched masks are cast (the same values)
        loss_ce = self.loss_labels(to_float32(torch.stack([out["pred_logits"] for out in sets])), target_classes)
        loss_mask, loss_dice = self.loss_masks([out["pred_masks"] for out in sets], sem_seg, matched, num_masks)
        losses = {}
        for i, suffix in enumerate(suffixes):
            losses["loss_ce" + suffix] = self.class_weight * loss_ce[i]
            losses["loss_mask" + suffix] = self.mask_weight * loss_mask[i]
            losses["loss_dice" + suffix] = self.dice_weight * loss_dice[i]
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
