"""The tiny MFuser (same code as the full-size one) in train and eval mode, on CPU."""
import copy
import inspect
import os

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from mfuser.modeling.meta_arch.mfuser import semantic_inference
from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "configs", "common", "models", "mfuser_tiny.py")
NUM_CLASSES = 19


def build_tiny(**overrides):
    cfg = LazyConfig.load(TINY)
    for key, value in overrides.items():
        setattr(cfg.model, key, value)
    torch.manual_seed(0)
    return instantiate(cfg.model)


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny()


def make_batch(num=2, size=(128, 128), seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num):
        image = torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
        sem_seg = torch.randint(0, 4, size, generator=g)
        sem_seg[:8] = 255
        batch.append({"image": image, "sem_seg": sem_seg, "file_name": "sample.png"})
    return batch


def test_train_forward_gradients_reach_exactly_the_trainable_parameters(tiny_model):
    model = tiny_model
    model.train()
    with EventStorage():
        losses = model(make_batch())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_score_map"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and trainable
    assert all(n.startswith(("backbone.vfm.", "backbone.vlm.", "text_encoder.tower.")) for n in frozen)
    assert not [n for n in trainable if n.startswith(("backbone.vfm.", "backbone.vlm.", "text_encoder.tower."))]
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, f"trainable parameters without gradient: {no_grad}"
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("frozen_encoders_eval", [False, True])
def test_frozen_encoders_follow_the_train_mode_unless_asked_not_to(frozen_encoders_eval):
    """Official: the frozen encoders are in train mode while training, so CLIP's drop path fires on them."""
    cfg = LazyConfig.load(TINY)
    cfg.model.backbone.vlm.drop_path_rate = 0.5
    cfg.model.backbone.frozen_encoders_eval = frozen_encoders_eval
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    bb = model.backbone
    assert bb.vfm.training == bb.vlm.training == (not frozen_encoders_eval)
    images = torch.rand(2, 3, 128, 128) * 255
    grid = bb.vfm.grid((128, 128))
    with torch.no_grad():
        a = bb.vlm.block(3, bb.vlm.embed(images), grid)
        b = bb.vlm.block(3, bb.vlm.embed(images), grid)
    assert torch.equal(a, b) == frozen_encoders_eval
    model.eval()
    assert not bb.vfm.training and not bb.vlm.training


def test_eval_output_format_and_size(tiny_model):
    model = tiny_model
    model.eval()
    image = torch.randint(0, 256, (3, 100, 150), dtype=torch.uint8)
    (out,) = model([{"image": image, "height": 200, "width": 300}])
    assert out["sem_seg"].shape == (NUM_CLASSES, 200, 300)
    assert torch.isfinite(out["sem_seg"]).all() and (out["sem_seg"] >= 0).all()


def test_slide_equals_whole_when_the_image_fits_one_window(tiny_model):
    model = copy.deepcopy(tiny_model).eval()
    image = torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)
    model.inference_mode = "slide"
    slide = model([{"image": image}])[0]["sem_seg"]
    model.inference_mode = "whole"
    whole = model([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-6)


def test_batched_windows_equal_window_by_window_and_arbitrary_sizes_come_back_full(tiny_model):
    model = copy.deepcopy(tiny_model).eval()
    image = torch.randint(0, 256, (3, 300, 410), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model.window_batch_size = 1
    one = model([{"image": image}])[0]["sem_seg"]
    model.window_batch_size = 7
    many = model([{"image": image}])[0]["sem_seg"]
    assert one.shape == (NUM_CLASSES, 300, 410)
    # batched GEMMs round differently from single ones; through the LayerNorms of the random tiny model this
    # reaches ~1e-4 at a few pixels (measured up to 1.0e-4 abs on scores ~0.7), never a different function
    torch.testing.assert_close(one, many, rtol=1e-3, atol=2e-4)
    assert (one.argmax(0) != many.argmax(0)).float().mean() < 1e-4


def test_small_images_are_padded_not_crashed_on(tiny_model):
    model = tiny_model.eval()
    for mode in ("slide", "whole"):
        model.inference_mode = mode
        out = model([{"image": torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)}])[0]["sem_seg"]
        assert out.shape == (NUM_CLASSES, 37, 53)
    model.inference_mode = "slide"


def test_bad_inputs_get_clear_errors(tiny_model):
    model = tiny_model
    model.eval()
    with pytest.raises(ValueError, match=r"\(3, H, W\) RGB"):
        model([{"image": torch.zeros(1, 64, 64, dtype=torch.uint8), "file_name": "gray.png"}])
    with pytest.raises(ValueError, match="rgba.png"):
        model([{"image": torch.zeros(4, 64, 64, dtype=torch.uint8), "file_name": "rgba.png"}])
    model.train()
    batch = make_batch(1)
    batch[0]["sem_seg"] = batch[0]["sem_seg"][:100]
    batch[0]["file_name"] = "city_0001.png"
    with pytest.raises(ValueError, match=r"city_0001\.png.*does not match the image size"), EventStorage():
        model(batch)


def test_vocabulary_size_must_match_the_head():
    with pytest.raises(ValueError, match="3 class names"):
        build_tiny(class_names=["road", "car", "sky"])


def test_overfits_one_small_batch():
    model = build_tiny()
    model.train()
    batch = make_batch(2, seed=1)
    # a simple layout the model can learn: left half class 0, right half class 1 (+ an ignored band)
    for x in batch:
        x["sem_seg"][:, :64] = 0
        x["sem_seg"][:, 64:] = 1
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    history = []
    with EventStorage():
        for _ in range(30):
            loss = sum(model(batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history


@pytest.mark.parametrize("mode", ["full", "covered"])
def test_window_scores_of_a_partly_covered_window(mode):
    """A 132 px window with patch 8: 16x16 tokens cover 128 px. Official ("full"): the 1/4-grid scores are
    stretched over the whole window; "covered": resized to 128 px and the 4 uncovered rows/columns replicated."""
    model = build_tiny(window_score_resize=mode).eval()
    windows = torch.rand(1, 3, 132, 132) * 255
    text = model.class_embeddings()
    with torch.no_grad():
        outputs, _, _ = model.forward_features(windows, text)
        scores = semantic_inference(outputs["pred_logits"], outputs["pred_masks"])  # (1, K, 32, 32)
        got = model.predict_windows(windows, text)
    assert got.shape == (1, NUM_CLASSES, 132, 132)
    if mode == "full":
        torch.testing.assert_close(got, F.interpolate(scores, size=(132, 132), mode="bilinear", align_corners=False))
    else:
        torch.testing.assert_close(got[..., :128, :128],
                                   F.interpolate(scores, size=(128, 128), mode="bilinear", align_corners=False))
        assert torch.equal(got[..., 128:, :128], got[..., 127:128, :128].expand(-1, -1, 4, -1))


@pytest.mark.parametrize("mode, label_size", [("full", 132), ("covered", 128)])
def test_training_labels_cover_the_crop_the_window_resize_says(mode, label_size, monkeypatch):
    model = build_tiny(window_score_resize=mode).train()
    seen = []
    criterion_forward = model.criterion.forward
    monkeypatch.setattr(model.criterion, "forward",
                        lambda out, sem: seen.append(sem.shape) or criterion_forward(out, sem))
    with EventStorage():
        model(make_batch(num=1, size=(132, 132)))
    assert seen == [(1, label_size, label_size)]


def test_bad_window_score_resize_is_refused():
    with pytest.raises(ValueError, match="window_score_resize"):
        build_tiny(window_score_resize="stretch")


def test_score_softmax_keeps_the_argmax(tiny_model):
    batch = [{"image": torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8), "height": 100, "width": 120}]
    model = copy.deepcopy(tiny_model).eval()
    plain = model(batch)[0]["sem_seg"]
    model.score_softmax = True
    soft = model(batch)[0]["sem_seg"]
    torch.testing.assert_close(soft, plain.softmax(0))
    assert torch.equal(soft.argmax(0), plain.argmax(0))


def test_inputs_are_padded_with_the_configured_colour(tiny_model, monkeypatch):
    """``pad_value`` (RGB 0-255) fills the batch beyond each image; the default is the CLIP mean, as configured."""
    from mfuser.modeling.meta_arch.mfuser import CLIP_MEAN_RGB, MFuser

    assert tuple(LazyConfig.load(TINY).model.pad_value) == pytest.approx(CLIP_MEAN_RGB)
    assert tiny_model.pad_value == pytest.approx(CLIP_MEAN_RGB)
    assert inspect.signature(MFuser).parameters["pad_value"].default == CLIP_MEAN_RGB
    model = copy.copy(tiny_model)  # shallow: shares the modules, own attributes
    model.pad_value = (10.0, 20.0, 30.0)
    seen = []

    class Stop(Exception):
        pass

    def capture(images, text):
        seen.append(images)
        raise Stop

    monkeypatch.setattr(model, "forward_features", capture)
    was_training = tiny_model.training
    try:
        model.train()
        with pytest.raises(Stop):
            model(make_batch(1, (64, 64)) + make_batch(1, (64, 96)))
    finally:
        tiny_model.train(was_training)  # the copy shares the fixture's submodules
    batch = seen[0]
    assert batch.shape == (2, 3, 64, 96)
    assert (batch[0, :, :, 64:] == torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)).all()
    with pytest.raises(ValueError, match="pad_value"):
        build_tiny(pad_value=(1.0, 2.0))
