import numpy as np
import pytest

from jointseg.seg.sslcst.postprocess import (
    cells_from_sinks,
    class_vectors,
    direction_class,
    direction_prior,
    flow_cells,
    smooth,
    track_flows,
)


def test_direction_classes_cut_the_circle_into_sixteen_sectors():
    angles = (np.arange(16) + 0.5) * 2 * np.pi / 16
    np.testing.assert_array_equal(direction_class(np.sin(angles), np.cos(angles)), np.arange(16))
    # sector k starts at k * 22.5 degrees, measured from +x towards +y (image rows)
    assert direction_class(np.array([0.0]), np.array([1.0]))[0] == 0
    assert direction_class(np.array([1.0]), np.array([1.0]))[0] == 2
    assert direction_class(np.array([-1e-9]), np.array([1.0]))[0] == 15
    assert direction_class(np.array([0.0]), np.array([-1.0]))[0] == 8


def test_class_vectors_are_unit_vectors_of_their_own_class():
    vectors = class_vectors(16)
    np.testing.assert_allclose(np.hypot(*vectors.T), 1.0)
    np.testing.assert_array_equal(direction_class(vectors[:, 0], vectors[:, 1]), np.arange(16))


def test_direction_prior_allows_the_near_centroids_then_the_far_ones_then_all():
    y, x = np.array([0.0, 0.0, 0.0]), np.array([0.0, 20.0, 40.0])
    centres_y, centres_x = np.array([0.0, 0.0, 4.5]), np.array([-3.0, 24.5, 20.0])
    allowed = direction_prior(y, x, centres_y, centres_x, radius=4.0)
    # bin 0: the centroid 3 bins to its left (class 8) is within r
    assert np.flatnonzero(allowed[0]).tolist() == [8]
    # bin 1: nothing within r = 4; two centroids within 1.25 r: right (class 0) and down (class 4)
    assert np.flatnonzero(allowed[1]).tolist() == [0, 4]
    # bin 2: no centroid within 1.25 r: uniform
    assert allowed[2].all()


def test_tracking_sends_each_basin_to_its_sink():
    yy, xx = np.mgrid[:5, :12]
    centre_x = np.where(xx < 6, 2, 9)
    vectors = np.stack([2 - yy, centre_x - xx]).astype(float)
    sinks = track_flows(np.ones((5, 12), bool), vectors)
    left, right = 2 * 12 + 2, 2 * 12 + 9
    np.testing.assert_array_equal(sinks.reshape(5, 12), np.where(xx < 6, left, right))


def test_tracking_stops_where_the_direction_turns_back_and_at_the_foreground_edge():
    vectors = np.zeros((2, 1, 6))
    vectors[1] = [1, 1, 1, -1, -1, -1]  # two flows meeting between x = 2 and x = 3
    sinks = track_flows(np.ones((1, 6), bool), vectors)
    assert sinks.tolist() == [2, 2, 2, 3, 3, 3]
    foreground = np.array([[True, True, False, True, True, True]])
    sinks = track_flows(foreground, np.stack([np.zeros((1, 6)), np.ones((1, 6))]))
    assert sinks.tolist() == [1, 1, -1, 5, 5, 5]


def test_sinks_merge_when_close_or_on_one_nucleus():
    shape = (1, 20)
    sinks = np.array([0, 0, 2, 2, 10, 10, 16, 16, 19, 19] + [-1] * 10)
    nuclei = np.zeros(shape, int)
    nuclei[0, 16:20] = 7  # sinks 16 and 19 are 3 bins apart but on one nucleus
    cells = cells_from_sinks(sinks, shape, nuclei, merge_distance=2.5)
    assert len(np.unique(cells[0, :4])) == 1  # sinks 0 and 2 are 2 bins apart
    assert cells[0, 4] != cells[0, 0]
    assert cells[0, 6] == cells[0, 8] != cells[0, 4]
    assert (cells[0, 10:] == 0).all()
    apart = cells_from_sinks(sinks, shape, np.zeros(shape, int), merge_distance=2.5)
    assert apart[0, 6] != apart[0, 8]
    nuclei[0, 0:2], nuclei[0, 2:4] = 1, 2  # sinks 0 and 2 are close but on two nuclei
    assert len(np.unique(cells_from_sinks(sinks, shape, nuclei, merge_distance=2.5)[0, :4])) == 2


def test_flow_cells_separates_two_touching_cells_and_drops_small_ones():
    yy, xx = np.mgrid[:9, :20]
    centre_x = np.where(xx < 10, 4, 14)
    vectors = np.stack([4 - yy, centre_x - xx]).astype(float)
    probability = np.zeros((9, 20))
    probability[:, 1:19] = 1.0
    cells = flow_cells(probability, vectors, np.zeros((9, 20), int), threshold=0.5, merge_distance=2)
    assert cells.max() == 2
    assert (cells[:, 2:9] == cells[4, 4]).all() and (cells[:, 11:18] == cells[4, 14]).all()
    assert cells[4, 4] != cells[4, 14]
    assert flow_cells(probability, vectors, np.zeros((9, 20), int), threshold=0.5, min_area=200).max() == 0


def test_smooth_is_a_three_by_three_mean():
    field = np.zeros((5, 5))
    field[2, 2] = 9.0
    once = smooth(field, passes=1)
    np.testing.assert_allclose(once[1:4, 1:4], 1.0)
    assert once.sum() == pytest.approx(9.0)
