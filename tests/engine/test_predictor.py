"""mfuser.engine.predictor: the colour order it takes, the images it refuses, the test resize, the output helpers."""
import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from omegaconf import OmegaConf
from PIL import Image

from mfuser.data import CITYSCAPES_COLORS, MFuserTestDatasetMapper, register_target_domain
from mfuser.data.datasets.register import unregister
from mfuser.engine import MFuserPredictor
from mfuser.engine.predictor import Prediction

SEEN = []


class Recorder(torch.nn.Module):
    """Records its inputs; predicts class ``(column // 4) % 3`` at the original size (3 score channels)."""

    def forward(self, batched_inputs):
        SEEN.extend(batched_inputs)
        outs = []
        for x in batched_inputs:
            cls = (torch.arange(x["width"]) // 4) % 3
            scores = torch.nn.functional.one_hot(cls, 3).T.float()[:, None, :].expand(3, x["height"], x["width"])
            outs.append({"sem_seg": scores.clone()})
        return outs


def _cfg(**dataloader):
    cfg = {"model": L(Recorder)(), "train": {"device": "cpu", "init_checkpoint": ""}}
    if dataloader:
        cfg["dataloader"] = dataloader
    return OmegaConf.create(cfg)


@pytest.fixture()
def image():
    return np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)  # high-frequency content


@pytest.fixture(autouse=True)
def _clear():
    SEEN.clear()


def test_predictor_input_equals_the_evaluation_mapper_input(tmp_path, image):
    """The predictor (demo, web demo) and the evaluation loader (MFuserTestDatasetMapper) give the model the same
    pixels: same resize, same RGB channel order, from an RGB or a BGR caller."""
    path = str(tmp_path / "img.png")
    Image.fromarray(image).save(path)
    resize = (40, 20)  # fits 45x70 into long 40 / short 20: downscaled to 20x31
    out = MFuserPredictor(_cfg(), resize_to=resize, input_format="RGB")(image)
    assert out["sem_seg"].shape == (3, 45, 70)
    MFuserPredictor(_cfg(), resize_to=resize, input_format="BGR")(np.ascontiguousarray(image[:, :, ::-1]))
    mapped = MFuserTestDatasetMapper(resize_to=resize)({"file_name": path, "height": 45, "width": 70})
    assert mapped["image"].shape == (3, 20, 31) and (mapped["height"], mapped["width"]) == (45, 70)
    for seen in SEEN:
        assert (seen["height"], seen["width"]) == (45, 70)
        assert seen["image"].dtype == torch.uint8 and torch.equal(seen["image"], mapped["image"])
    with pytest.raises(ValueError, match="resize_to"):
        MFuserPredictor(_cfg(), resize_to=(0, 10))


def test_input_format_follows_the_config_else_bgr_like_detectron2(image):
    test = {"mapper": {"image_format": "RGB"}}
    assert MFuserPredictor(_cfg()).input_format == "BGR"  # detectron2's DefaultPredictor default
    assert MFuserPredictor(_cfg(test=test, targets=[])).input_format == "RGB"  # what the config's loader reads
    bgr_caller = MFuserPredictor(_cfg(test=test, targets=[]), input_format="bgr")
    assert (bgr_caller.input_format, bgr_caller.model_format) == ("BGR", "RGB")
    bgr_caller(np.ascontiguousarray(image[:, :, ::-1]))
    MFuserPredictor(_cfg())(np.ascontiguousarray(image[:, :, ::-1]))  # default BGR in, RGB to the model
    for seen in SEEN:
        assert torch.equal(seen["image"], torch.as_tensor(image).permute(2, 0, 1))  # the model always gets RGB
    with pytest.raises(ValueError, match="input_format.*YUV"):
        MFuserPredictor(_cfg(), input_format="YUV")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 9, 3), np.float32), "uint8.*float32"),
        (np.zeros((8, 9), np.uint8), "single-channel.*np.repeat"),
        (np.zeros((8, 9, 4), np.uint8), r"\(8, 9, 4\).*alpha"),
        (np.zeros((3, 8, 9), np.uint8), "channels must come last"),
        (np.zeros((0, 9, 3), np.uint8), "non-empty"),
        (Image.new("RGB", (9, 8)), "Image.*np.asarray"),
        ([[0, 0, 0]], "numpy array, got list"),
    ],
)
def test_wrong_images_are_refused_with_a_message(bad, match):
    with pytest.raises(ValueError, match=match):
        MFuserPredictor(_cfg(), input_format="RGB")(bad)
    assert not SEEN  # refused before the model ran


def test_config_test_resize_metadata_and_output_helpers(tmp_path, image):
    name = register_target_domain("predictor_test_domain", str(tmp_path / "i"), str(tmp_path / "l"),
                                  image_suffix=".png", label_suffix=".png", overwrite=True)
    cfg = _cfg(targets=[name], test_resize={name: (40, 20)}, test={"mapper": {"image_format": "RGB"}})
    try:
        predictor = MFuserPredictor(cfg)
    finally:
        unregister(name)  # the metadata stays on the predictor
    assert predictor.dataset == name and predictor.resize_to == (40, 20)
    out = predictor(image)
    assert SEEN[0]["image"].shape == (3, 20, 31)  # resized as dataloader.test_resize says
    assert isinstance(out, Prediction) and isinstance(out, dict) and set(out) == {"sem_seg"}
    labels = out.labels()
    expected = np.broadcast_to((np.arange(70) // 4) % 3, (45, 70))
    assert labels.dtype == np.uint8 and labels.shape == (45, 70) and np.array_equal(labels, expected)
    colours = np.asarray(CITYSCAPES_COLORS, np.uint8)
    full = out.overlay(alpha=1.0)
    assert full.shape == (45, 70, 3) and full.dtype == np.uint8 and np.array_equal(full, colours[expected])
    assert np.array_equal(out.overlay(alpha=0.0), image)
    with_legend = out.overlay(legend=True)
    assert with_legend.shape[0] > 45 and with_legend.shape[1] == 70
    no_meta = MFuserPredictor(_cfg(), input_format="RGB")(image)
    assert np.array_equal(no_meta.labels(), expected)
    with pytest.raises(ValueError, match="dataset=NAME"):
        no_meta.overlay()
