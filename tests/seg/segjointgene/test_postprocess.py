import numpy as np

from jointseg.seg.segjointgene.postprocess import core_types, grow_by_type


def _row(*values):
    return np.array([values])


def test_cells_grow_only_into_their_type():
    cores = _row(0, 1, 0, 0, 0, 0, 0, 2, 0)
    allowed = _row(1, 1, 1, 2, 2, 2, 2, 2, 2)
    out = grow_by_type(cores, allowed, np.array([0, 1, 1]), max_distance=10, max_hole_area=0)
    # cell 2 has type 1: it keeps its core but cannot enter the type-2 pixels around it
    np.testing.assert_array_equal(out, _row(1, 1, 1, 0, 0, 0, 0, 2, 0))


def test_balanced_split_and_distance_cap():
    cores = _row(1, 0, 0, 0, 0, 0, 0, 0, 2)
    allowed = np.ones((1, 9), int)
    out = grow_by_type(cores, allowed, np.array([0, 1, 1]), max_distance=3, max_hole_area=0)
    np.testing.assert_array_equal(out, _row(1, 1, 1, 1, 0, 2, 2, 2, 2))


def test_unconnected_pixels_are_not_reached_and_cores_are_kept():
    cores = _row(1, 0, 0, 0, 0)
    allowed = _row(2, 0, 1, 1, 1)  # the core's own pixel has another type; a gap cuts it from the rest
    out = grow_by_type(cores, allowed, np.array([0, 1]), max_distance=10, max_hole_area=0)
    np.testing.assert_array_equal(out, _row(1, 0, 0, 0, 0))


def test_untyped_nucleus_takes_the_majority_type_under_it():
    cores = _row(0, 1, 1, 1, 0)
    allowed = _row(2, 2, 2, 1, 2)
    np.testing.assert_array_equal(core_types(cores, allowed, np.array([0, 0])), _row(0, 2, 2, 2, 0))
    out = grow_by_type(cores, allowed, np.array([0, 0]), max_distance=5, max_hole_area=0)
    np.testing.assert_array_equal(out, _row(1, 1, 1, 1, 1))


def test_fill_shares_the_foreground_that_failed_the_type_rule():
    cores = _row(1, 0, 0, 0, 0, 0, 2)
    allowed = _row(1, -1, -1, -1, -1, 0, 2)
    type_of = np.array([0, 1, 2])
    strict = grow_by_type(cores, allowed, type_of, max_distance=10, max_hole_area=0)
    np.testing.assert_array_equal(strict, _row(1, 0, 0, 0, 0, 0, 2))
    filled = grow_by_type(cores, allowed, type_of, max_distance=10, max_hole_area=0, fill=True)
    np.testing.assert_array_equal(filled, _row(1, 1, 1, 1, 2, 0, 2))


def test_enclosed_hole_is_filled():
    cores = np.zeros((5, 5), int)
    cores[2, 0] = 1
    allowed = np.ones((5, 5), int)
    allowed[2, 2] = 0
    out = grow_by_type(cores, allowed, np.array([0, 1]), max_distance=10, max_hole_area=1)
    assert (out == 1).all()
