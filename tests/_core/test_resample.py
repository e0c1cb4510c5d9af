import numpy as np
import pytest

from jointseg._core.resample import grid_coordinates, grid_factor, prefilter_margin, prefilter_sigma, resample


def test_linear_ramp_is_sampled_exactly_both_ways():
    ramp = np.tile(np.arange(40, dtype=np.float32), (30, 1))  # value = x
    factor = 2.5
    xs = grid_coordinates(0, 16, factor)
    coarse = resample(ramp, grid_coordinates(0, 12, factor), xs, order=1)
    np.testing.assert_allclose(coarse[0], xs, atol=1e-5)  # a linear image stays linear
    back = resample(coarse, grid_coordinates(0, 30, 1 / factor), grid_coordinates(0, 40, 1 / factor), order=1)
    inner = slice(2, 38)  # clamped at the edges
    np.testing.assert_allclose(back[:, inner], ramp[:, inner], atol=1e-4)


def test_nearest_keeps_label_values():
    labels = np.zeros((20, 20), np.int64)
    labels[4:12, 6:16] = 7
    out = resample(labels, grid_coordinates(0, 10, 2.0), grid_coordinates(0, 10, 2.0), order=0)
    assert set(np.unique(out)) == {0, 7} and out.dtype == labels.dtype
    assert (out == 7).sum() == 4 * 5


def test_a_block_with_its_margin_matches_the_whole_image():
    rng = np.random.default_rng(0)
    image = rng.random((2, 90, 100)).astype(np.float32)
    factor = 2.35
    sigma, margin = prefilter_sigma(factor), prefilter_margin(factor)
    whole = resample(image, grid_coordinates(0, 38, factor), grid_coordinates(0, 43, factor), order=1, sigma=sigma)
    a, b, c, d = 10, 25, 12, 30  # a block of the coarse grid
    y0, x0 = int(np.floor(a * factor)) - margin, int(np.floor(c * factor)) - margin
    y1, x1 = int(np.ceil(b * factor)) + margin, int(np.ceil(d * factor)) + margin
    block = resample(image[:, y0:y1, x0:x1], grid_coordinates(a, b, factor, y0), grid_coordinates(c, d, factor, x0),
                     order=1, sigma=sigma)  # fmt: skip
    np.testing.assert_allclose(block, whole[:, a:b, c:d], atol=1e-6)


def test_grid_factor_and_bad_order():
    assert grid_factor(0.5, 0.25) == 2.0 and grid_factor(0.5, 0.499) == 1.0 and grid_factor(None, 0.3) == 1.0
    with pytest.raises(ValueError, match="order"):
        resample(np.zeros((4, 4)), np.zeros(1), np.zeros(1), order=3)
