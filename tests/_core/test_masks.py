import numpy as np

from jointseg._core.masks import fill_holes, keep_largest_piece


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
