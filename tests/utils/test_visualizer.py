"""Overlay helpers: per-class areas, the same-size blend of video frames and the web demo, the legend."""
import numpy as np
import pytest
from detectron2.data import Metadata

from mfuser.utils.visualizer import areas_from_counts, blend_overlay, class_areas, draw_overlay

META = Metadata(stuff_classes=["road", "car", "sky"], stuff_colors=[(128, 64, 128), (0, 0, 142), (70, 130, 180)])


def _labels():
    labels = np.full((4, 5), 255, np.uint8)  # 4 ignored pixels of 20
    labels[:2] = 0  # 10 road
    labels[2, :4] = 2  # 4 sky
    labels[3, :2] = 2  # 2 more sky
    return labels


def test_class_areas_are_shares_of_all_pixels_largest_first():
    assert class_areas(_labels(), 3) == [(0, 0.5), (2, 0.3)]  # car absent, ignore counts in the total
    assert areas_from_counts(np.array([10, 0, 6, 4])) == [(0, 0.5), (2, 0.3)]
    assert class_areas(np.zeros((0, 3), np.uint8), 3) == [] and areas_from_counts(np.zeros(4, int)) == []


def test_blend_overlay_keeps_size_and_ignored_pixels():
    image = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    labels = _labels()
    np.testing.assert_array_equal(blend_overlay(image, labels, META, 0.0), image)
    full = blend_overlay(image, labels, META, 1.0)
    np.testing.assert_array_equal(full[labels == 0], np.tile([128, 64, 128], (10, 1)))
    np.testing.assert_array_equal(full[labels == 255], image[labels == 255])  # no class: the image
    half = blend_overlay(image, labels, META, 0.5).astype(int)
    expected = np.rint((image[0, 0].astype(float) + [128, 64, 128]) / 2)
    assert np.abs(half[0, 0] - expected).max() <= 1
    with pytest.raises(ValueError, match="differ in size"):
        blend_overlay(image, labels[:3], META)


def test_draw_overlay_appends_a_legend_row_per_present_class():
    image = np.zeros((4, 5, 3), np.uint8)
    out = draw_overlay(image, _labels(), META)
    assert out.shape[1] == 5 and out.shape[0] == 4 + 2 * 16 + 4  # two classes present
