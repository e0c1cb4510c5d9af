import numpy as np
import pytest
from scipy import ndimage as ndi

from jointseg._core.masks import fill_holes, keep_largest_piece, max_per_label, min_per_label


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint32])
def test_per_label_extremes_equal_scipys(dtype):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 40, (60, 50))
    labels[labels == 7] = 0  # a label with no pixel
    values = rng.integers(1, 1000, labels.shape).astype(dtype)
    index = np.arange(45)  # and labels past the largest one present
    expected_max, expected_min = ndi.maximum(values, labels, index), ndi.minimum(values, labels, index)
    got_max, got_min = max_per_label(values, labels, 45), min_per_label(values, labels, 45)
    assert got_max.dtype == dtype and got_min.dtype == dtype
    np.testing.assert_array_equal(got_max, expected_max)
    np.testing.assert_array_equal(got_min, expected_min)


def test_fill_holes_only_fills_small_enclosed_background():
    lab = np.zeros((20, 20), int)
    lab[2:10, 2:10] = 1
    lab[5, 5] = 0  # small hole in cell 1
    lab[12:19, 2:18] = 2
    lab[14:17, 5:8] = 0  # a hole of 9 px
    out = fill_holes(lab, max_hole_area=4)
    assert out[5, 5] == 1
    assert (out[14:17, 5:8] == 0).all()
    assert out[0, 0] == 0


def test_keep_largest_piece():
    lab = np.zeros((10, 10), int)
    lab[0:4, 0:4] = 1
    lab[8:10, 8:10] = 1
    out = keep_largest_piece(lab)
    assert out[0, 0] == 1 and out[9, 9] == 0
