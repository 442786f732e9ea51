"""MFuserCriterion (fixed query<->class assignment, point-sampled mask losses) and score_map_loss."""
import pytest
import torch
import torch.nn.functional as F

from mfuser.modeling.heads import MFuserCriterion, score_map_loss
from mfuser.modeling.heads.criterion import _uniform_coordinates

K = 4


def _sem_seg():
    """(2, 32, 48): image 0 has classes 0, 1, 2 and an ignore block; image 1 has classes 1, 3."""
    sem = torch.zeros(2, 32, 48, dtype=torch.long)
    sem[0, :, 16:32] = 1
    sem[0, :, 32:] = 2
    sem[0, 8:24, 8:24] = 255
    sem[1] = 3
    sem[1, 16:] = 1
    return sem


def _perfect_outputs(sem, n_aux=2, margin=12.0):
    """Mask logits = +-margin from the GT masks at 1/4 resolution; confident class logits; ignore -> -margin."""
    B = sem.shape[0]
    onehot = torch.stack([(sem == k) for k in range(K)], 1).float()  # (B, K, H, W)
    masks = F.avg_pool2d(onehot, 4) * 2 * margin - margin
    logits = torch.full((B, K, K + 1), -margin)
    for b in range(B):
        for k in range(K):
            logits[b, k, k if (sem[b] == k).any() else K] = margin
    out = {"pred_logits": logits, "pred_masks": masks}
    out["aux_outputs"] = [{"pred_logits": logits.clone(), "pred_masks": masks.clone()} for _ in range(n_aux)]
    return out


def _total(losses):
    return sum(v.item() for v in losses.values())


def test_targets_fixed_assignment_and_no_object():
    crit = MFuserCriterion(num_classes=K)
    target_classes, matched, valid = crit._targets(_sem_seg())
    assert target_classes.tolist() == [[0, 1, 2, K], [K, 1, K, 3]]
    assert matched.tolist() == [[True, True, True, False], [False, True, False, True]]
    assert valid.shape == (2, 1, 32, 48) and valid[0, 0, 10, 10] == 0 and valid[1].all()


def test_perfect_prediction_beats_permuted_one():
    torch.manual_seed(0)
    sem = _sem_seg()
    crit = MFuserCriterion(num_classes=K, num_points=256, mask_ignore_as_background=False)
    good = _perfect_outputs(sem)
    losses = crit(good, sem)
    assert set(losses) == {f"{n}{s}" for n in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")}
    # not ~0: importance sampling picks the boundary points, where the bilinearly upsampled logits are ~0
    assert losses["loss_ce"] < 1e-3 and losses["loss_mask"] < 0.5 and losses["loss_dice"] < 0.5
    # swap queries 1 and 2 (masks and class logits together): a Hungarian matcher would not mind, we must
    perm = [0, 2, 1, 3]
    bad = {"pred_logits": good["pred_logits"][:, perm], "pred_masks": good["pred_masks"][:, perm], "aux_outputs": []}
    losses_bad = crit(bad, sem)
    assert losses_bad["loss_ce"] > 5 and losses_bad["loss_mask"] > 5 and losses_bad["loss_dice"] > 1
    top = ("loss_ce", "loss_mask", "loss_dice")
    assert sum(losses[n] for n in top) < 0.03 * sum(losses_bad[n] for n in top)
    # calling an absent class present (query 3 in image 0) costs CE
    wrong = {k: v.clone() for k, v in good.items() if k != "aux_outputs"}
    wrong["pred_logits"][0, 3] = wrong["pred_logits"][0, 3, [0, 1, 2, K, 3]]  # logit mass moves to class 3
    # = 2 * 0.1 * 24 / (5 + 3 * 0.1): the no-object target weighs 0.1
    assert crit(wrong, sem)["loss_ce"] > 0.8 > 100 * losses["loss_ce"]


def test_class_loss_weights_and_normalisation():
    crit = MFuserCriterion(num_classes=K, class_weight=2.0, no_object_weight=0.1, deep_supervision=False)
    sem = _sem_seg()
    logits = torch.randn(2, K, K + 1)
    target = torch.tensor([[0, 1, 2, K], [K, 1, K, 3]])
    w = torch.tensor([1.0] * K + [0.1])
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    expected = 2.0 * (ce * w[target.flatten()]).sum() / w[target.flatten()].sum()
    out = {"pred_logits": logits, "pred_masks": torch.zeros(2, K, 8, 12)}
    torch.testing.assert_close(crit(out, sem)["loss_ce"], expected)


@pytest.mark.parametrize("as_background", [False, True])
def test_ignore_pixels_do_not_contribute(as_background):
    sem = _sem_seg()  # ignore block rows/cols 8..23 of image 0 -> cells 2..5 at 1/4; interior cells 3..4
    crit = MFuserCriterion(num_classes=K, num_points=300, mask_ignore_as_background=as_background)
    out = _perfect_outputs(sem, n_aux=0)
    torch.manual_seed(0)
    base = crit(out, sem)
    changed = {k: v.clone() for k, v in out.items() if k != "aux_outputs"}
    changed["pred_masks"][0, :, 3:5, 3:5] = 30.0  # every query claims the interior of the ignore block
    torch.manual_seed(0)
    after = crit(changed, sem)
    for name in ("loss_mask", "loss_dice"):
        if as_background:  # the reference's behaviour: ignore pixels are negatives of every mask
            assert after[name] > base[name] + 0.1
        else:
            torch.testing.assert_close(after[name], base[name])


def test_ignore_pixels_are_mask_negatives_by_default_as_in_the_official_code():
    assert MFuserCriterion(num_classes=K).mask_ignore_as_background is True


def test_mask_losses_match_dense_computation_when_sampling_everything():
    """With many random points the sampled losses approach the dense per-pixel BCE / Dice over valid pixels."""
    torch.manual_seed(0)
    sem = _sem_seg()
    crit = MFuserCriterion(num_classes=K, num_points=20000, importance_sample_ratio=0.0, deep_supervision=False,
                           mask_ignore_as_background=False)
    masks = torch.randn(2, K, 8, 12)
    out = {"pred_logits": torch.zeros(2, K, K + 1), "pred_masks": masks}
    losses = crit(out, sem)
    up = F.interpolate(masks, size=(32, 48), mode="bilinear", align_corners=False)
    bce, dice = 0.0, 0.0
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 3)]
    for b, k in pairs:
        v = sem[b] != 255
        x, t = up[b, k][v], (sem[b][v] == k).float()
        bce += F.binary_cross_entropy_with_logits(x, t)
        p = x.sigmoid()
        dice += 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    torch.testing.assert_close(losses["loss_mask"], 5.0 * bce / len(pairs), atol=0.03, rtol=0.03)
    torch.testing.assert_close(losses["loss_dice"], 5.0 * dice / len(pairs), atol=0.03, rtol=0.03)


def test_all_ignore_and_bad_labels():
    crit = MFuserCriterion(num_classes=K, num_points=64)
    masks = torch.randn(1, K, 8, 12, requires_grad=True)
    logits = torch.randn(1, K, K + 1, requires_grad=True)
    losses = crit({"pred_logits": logits, "pred_masks": masks}, torch.full((1, 32, 48), 255))
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0 and torch.isfinite(losses["loss_ce"])
    sum(losses.values()).backward()
    with pytest.raises(ValueError, match="outside"):
        crit({"pred_logits": logits, "pred_masks": masks}, torch.full((1, 32, 48), K))
    with pytest.raises(ValueError, match="pred_logits"):
        crit({"pred_logits": logits[:, :, :-1], "pred_masks": masks}, torch.zeros(1, 32, 48, dtype=torch.long))


def test_score_map_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(2, 6, 5, 7, generator=g)
    text = torch.randn(2, K, 6, generator=g)
    sem = torch.randint(0, K, (2, 20, 28), generator=g)
    sem[0, :5] = 255
    # direct: loop over pixels for the cosine, then the usual upsampling and CE
    score = torch.zeros(2, K, 5, 7)
    for b in range(2):
        for k in range(K):
            for i in range(5):
                for j in range(7):
                    score[b, k, i, j] = F.cosine_similarity(dense[b, :, i, j], text[b, k], dim=0) / 0.07
    score = F.interpolate(score + 0.5, size=(20, 28), mode="bilinear", align_corners=False)
    valid = sem != 255
    logp = score.log_softmax(1)
    nll = -logp.gather(1, sem.clamp(max=K - 1)[:, None])[:, 0]
    # official (mmseg avg_non_ignore=False): the sum over labelled pixels divided by ALL pixels
    expected = nll[valid].sum() / sem.numel()
    got = score_map_loss(dense, text, sem, scale=1 / 0.07, bias=0.5)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # avg_non_ignore=True: the mean over labelled pixels only
    torch.testing.assert_close(score_map_loss(dense, text, sem, scale=1 / 0.07, bias=0.5, avg_non_ignore=True),
                               nll[valid].mean(), atol=1e-5, rtol=1e-5)
    # a shared (K, Dt) text matrix broadcasts; every pixel ignored -> 0
    torch.testing.assert_close(score_map_loss(dense[:1], text[0], sem[:1], scale=1 / 0.07, bias=0.5),
                               score_map_loss(dense[:1], text[:1], sem[:1], scale=1 / 0.07, bias=0.5))
    assert score_map_loss(dense, text, torch.full_like(sem, 255), scale=1.0) == 0
    with pytest.raises(ValueError, match="text"):
        score_map_loss(dense, text[..., :5], sem, scale=1.0)


# ---------------------------------------------------------------------------------------------------------------------
# The batched criterion (all prediction sets in one pass) against a straightforward loop over the sets: detectron2's
# get_uncertain_point_coords_with_randomness + point_sample per set, on the points the batched criterion drew.


def _per_set_reference(crit, outputs, sem, draw):
    """Losses of ``crit`` computed set by set as a plain loop (the criterion's code before batching).

    ``draw``: the batched criterion's one uniform draw in [-1, 1): N * S rows (row n * S + s = matched mask n of set s)
    of M candidates, then N * S rows of R uniform points. detectron2's sampler gets them per set through torch.rand.
    """
    from unittest import mock

    from detectron2.projects.point_rend import point_features as pf

    target_classes, matched, _ = crit._targets(sem)
    b_idx, k_idx = matched.nonzero(as_tuple=True)
    N, P = b_idx.numel(), crit.num_points
    num_masks = max(N, 1)
    sets = [outputs] + (list(outputs.get("aux_outputs", [])) if crit.deep_supervision else [])
    S = len(sets)
    n_unc = int(crit.importance_sample_ratio * P)
    M = int(P * crit.oversample_ratio) if n_unc else 0
    R = P - n_unc
    unit = (draw + 1) / 2  # detectron2's [0, 1) coordinates (exact: draw = 2 * u - 1 on the 2^-24 grid)
    cand = unit[: N * S * M * 2].view(N, S, M, 2)
    unif = unit[N * S * M * 2:].view(N, S, R, 2)
    assert unit.numel() == N * S * (M + R) * 2
    losses = {}
    for s, out in enumerate(sets):
        suffix = "" if s == 0 else f"_{s - 1}"
        logits = out["pred_logits"].float()
        ce = F.cross_entropy(logits.transpose(1, 2), target_classes, crit.empty_weight)
        losses["loss_ce" + suffix] = crit.class_weight * ce
        if N == 0:
            zero = out["pred_masks"].float().sum() * 0.0
            losses["loss_mask" + suffix] = losses["loss_dice" + suffix] = zero
            continue
        src = out["pred_masks"].float()[b_idx, k_idx][:, None]  # (N, 1, h, w)
        handed = [cand[:, s] if M else torch.zeros(N, int(P * crit.oversample_ratio), 2)]
        if R:
            handed.append(unif[:, s])

        def fake_rand(*shape, device=None, handed=handed):
            out_ = handed.pop(0)
            assert tuple(shape) == tuple(out_.shape)
            return out_.clone()

        with torch.no_grad():
            tgt = (sem[b_idx] == k_idx[:, None, None]).float()[:, None]
            with mock.patch.object(pf.torch, "rand", fake_rand):
                if crit.mask_ignore_as_background:
                    coords = pf.get_uncertain_point_coords_with_randomness(
                        src, lambda x: -x.abs(), P, crit.oversample_ratio, crit.importance_sample_ratio)
                else:
                    valid_n = (sem[b_idx] != crit.ignore_label).float()[:, None]
                    valid_coarse = F.adaptive_avg_pool2d(valid_n, src.shape[-2:])
                    coords = pf.get_uncertain_point_coords_with_randomness(
                        torch.cat([src, valid_coarse], 1),
                        lambda x: (-x[:, :1].abs()).masked_fill(x[:, 1:] <= 0, float("-inf")),
                        P, crit.oversample_ratio, crit.importance_sample_ratio)
            assert not handed
            labels = pf.point_sample(tgt, coords, align_corners=False).squeeze(1)
            weights = torch.ones_like(labels)
            if not crit.mask_ignore_as_background:
                weights = pf.point_sample(valid_n, coords, align_corners=False).squeeze(1)
                labels = torch.where(weights > 0, labels / weights.clamp(min=1e-12), torch.zeros_like(labels))
                labels = labels.clamp(0.0, 1.0)
        point_logits = pf.point_sample(src, coords, align_corners=False).squeeze(1)
        bce = F.binary_cross_entropy_with_logits(point_logits, labels, reduction="none")
        loss_mask = ((bce * weights).sum(1) / weights.sum(1).clamp(min=1e-6)).sum() / num_masks
        probs = point_logits.sigmoid() * weights
        dice = 1 - (2 * (probs * labels).sum(1) + 1) / (probs.sum(1) + (labels * weights).sum(1) + 1)
        losses["loss_mask" + suffix] = crit.mask_weight * loss_mask
        losses["loss_dice" + suffix] = crit.dice_weight * dice.sum() / num_masks
    return losses


def _random_outputs(B, n_aux, h, w, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {"pred_logits": torch.randn(B, K, K + 1, generator=g).to(dtype).requires_grad_(),
                "pred_masks": (3 * torch.randn(B, K, h, w, generator=g)).to(dtype).requires_grad_()}

    out = one()
    out["aux_outputs"] = [one() for _ in range(n_aux)]
    return out


def _leaves(outputs):
    return [outputs["pred_logits"], outputs["pred_masks"]] + [
        t for aux in outputs.get("aux_outputs", []) for t in (aux["pred_logits"], aux["pred_masks"])]


def _compare_with_per_set_loop(crit, outputs, sem, grads=True):
    N, S = int(crit._targets(sem)[1].sum()), 1 + (len(outputs.get("aux_outputs", [])) if crit.deep_supervision else 0)
    P = crit.num_points
    n_unc = int(crit.importance_sample_ratio * P)
    size = N * S * ((int(P * crit.oversample_ratio) if n_unc else 0) + P - n_unc) * 2
    torch.manual_seed(123)
    got = crit(outputs, sem)
    torch.manual_seed(123)
    draw = _uniform_coordinates(size, "cpu")  # what the criterion drew: one draw, nothing else
    expected = _per_set_reference(crit, outputs, sem, draw)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=2e-6, atol=1e-6, msg=name)
    if not grads:
        return
    leaves = _leaves(outputs) if crit.deep_supervision else [outputs["pred_logits"], outputs["pred_masks"]]
    coef = torch.linspace(0.5, 1.5, len(expected))  # every loss term with its own weight
    g_got = torch.autograd.grad(sum(c * got[n] for c, n in zip(coef, sorted(got))), leaves)
    g_exp = torch.autograd.grad(sum(c * expected[n] for c, n in zip(coef, sorted(expected))), leaves)
    for a, b in zip(g_got, g_exp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_uniform_coordinates_cover_the_grid_range_evenly():
    """The point coordinates: float32 cell centres of a 2^16 grid on [-1, 1), uniform, reproducible by seed."""
    torch.manual_seed(0)
    c = _uniform_coordinates(400_001, "cpu")  # not a multiple of 4: the tail of the last int64 draw is dropped
    assert c.dtype == torch.float32 and c.shape == (400_001,)
    assert c.min() >= -1 + 2.0**-16 and c.max() <= 1 - 2.0**-16
    k = (c + 1) * 2.0**15 - 0.5  # back to the integer cell index 0 .. 2^16 - 1
    assert torch.equal(k, k.round()) and int(k.unique().numel()) > 65_000  # on the grid, nearly every cell hit
    hist = torch.histc(c, bins=16, min=-1, max=1)
    assert (hist / c.numel() - 1 / 16).abs().max() < 0.003  # 16 bins of about 25 000: 3-sigma ~ 0.0011
    assert abs(float(c.mean())) < 0.005
    # the two coordinates of a point are independent: no correlation between neighbouring values
    assert abs(float(torch.corrcoef(c[:400_000].view(-1, 2).t())[0, 1])) < 0.01
    torch.manual_seed(0)
    assert torch.equal(_uniform_coordinates(400_001, "cpu"), c)


@pytest.mark.parametrize("as_background", [True, False])
@pytest.mark.parametrize("empty_image", [False, True])
def test_batched_sets_equal_a_per_set_loop_with_gradients(as_background, empty_image):
    """Deep supervision over 4 sets in one pass == the per-set loop on the same points: losses and gradients."""
    sem = _sem_seg()
    if empty_image:  # image 1 has no labelled pixel: no matched mask there, only no-object queries
        sem[1] = 255
    crit = MFuserCriterion(num_classes=K, num_points=64, mask_ignore_as_background=as_background)
    _compare_with_per_set_loop(crit, _random_outputs(2, 3, 8, 12), sem)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.3])
def test_batched_sets_equal_a_per_set_loop_at_extreme_importance_ratios(ratio):
    crit = MFuserCriterion(num_classes=K, num_points=50, importance_sample_ratio=ratio, oversample_ratio=2.5,
                           mask_ignore_as_background=False)
    _compare_with_per_set_loop(crit, _random_outputs(2, 1, 16, 24), _sem_seg())


def test_batched_sets_equal_a_per_set_loop_without_deep_supervision_and_in_bf16():
    sem = _sem_seg()
    crit = MFuserCriterion(num_classes=K, num_points=64, deep_supervision=False)
    _compare_with_per_set_loop(crit, _random_outputs(2, 2, 8, 12), sem)
    # bf16 predictions: the matched masks are cast to float32 after selection, the same values as before
    out = _random_outputs(2, 2, 8, 12, dtype=torch.bfloat16)
    crit = MFuserCriterion(num_classes=K, num_points=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _compare_with_per_set_loop(crit, out, sem, grads=False)


def test_no_matched_mask_in_any_set():
    crit = MFuserCriterion(num_classes=K, num_points=64)
    out = _random_outputs(2, 3, 8, 12)
    losses = crit(out, torch.full((2, 32, 48), 255))
    assert len(losses) == 12
    assert all(losses[f"loss_{n}{s}"] == 0 for n in ("mask", "dice") for s in ("", "_0", "_1", "_2"))
    sum(losses.values()).backward()
    assert all(t.grad is not None for t in _leaves(out))
    assert all((aux["pred_masks"].grad == 0).all() for aux in out["aux_outputs"])


def test_prediction_sets_of_other_shapes_and_bad_sampling_parameters_are_rejected():
    crit = MFuserCriterion(num_classes=K, num_points=64)
    out = _random_outputs(2, 1, 8, 12)
    out["aux_outputs"][0]["pred_masks"] = torch.zeros(2, K, 4, 6)
    with pytest.raises(ValueError, match="prediction set _0"):
        crit(out, _sem_seg())
    with pytest.raises(ValueError, match="oversample_ratio"):
        MFuserCriterion(num_classes=K, oversample_ratio=0.5)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        MFuserCriterion(num_classes=K, importance_sample_ratio=1.5)
