import numpy as np
import pytest

from jointseg.seg.genesegnet.postprocess import centre_offsets, instances_from_offsets


def _discs(shape, centres, radius):
    yy, xx = np.indices(shape)
    lab = np.zeros(shape, int)
    for k, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return lab


def test_centre_offsets_point_to_centroid():
    lab = _discs((60, 60), [(20, 20), (40, 42)], 8)
    off = centre_offsets(lab)
    yy, xx = np.indices(lab.shape)
    for k, (cy, cx) in enumerate([(20, 20), (40, 42)], start=1):
        m = lab == k
        np.testing.assert_allclose(yy[m] + off[0][m], cy, atol=1e-4)
        np.testing.assert_allclose(xx[m] + off[1][m], cx, atol=1e-4)
    assert (off[:, lab == 0] == 0).all()


def test_exact_fields_give_exact_instances_for_touching_cells():
    centres = [(30, 30), (30, 52), (60, 40), (90, 90)]
    lab = _discs((120, 120), centres, 12)  # the first three touch
    out = instances_from_offsets((lab > 0).astype(float), centre_offsets(lab), min_area=50, min_distance=8)
    pairs = {(a, b) for a, b in zip(lab[lab > 0], out[lab > 0], strict=True)}
    assert len(pairs) == 4 and len({b for _, b in pairs}) == 4  # a one-to-one relabelling
    assert ((out > 0) == (lab > 0)).all()


def test_noisy_offsets_still_separate_cells():
    lab = _discs((100, 100), [(30, 30), (30, 60), (70, 45)], 14)
    rng = np.random.default_rng(0)
    off = centre_offsets(lab) + rng.normal(0, 1.5, (2, 100, 100)).astype(np.float32)
    out = instances_from_offsets((lab > 0).astype(float), off, min_area=50, min_distance=8)
    from jointseg.metrics import instance_scores

    scores = instance_scores(out, lab)
    assert scores["n_pred"] == 3 and scores["mean_iou"] > 0.95


def test_small_cells_are_dropped_and_their_pixels_reassigned():
    lab = _discs((80, 80), [(40, 30)], 15)
    off = centre_offsets(lab)
    off[:, 40, 44:46] = 0  # two pixels vote for themselves: a spurious 2-pixel centre
    out = instances_from_offsets((lab > 0).astype(float), off, min_area=30, min_distance=3, max_vote_distance=20)
    assert out.max() == 1 and ((out > 0) == (lab > 0)).all()


def test_empty_probability_gives_no_cells():
    out = instances_from_offsets(np.zeros((32, 32)), np.zeros((2, 32, 32)))
    assert out.max() == 0 and out.dtype == np.int64


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotated_offsets_match_offsets_of_rotated_labels(k):
    import torch

    from jointseg.seg.genesegnet.train import rotate_offsets

    lab = _discs((64, 64), [(20, 25), (44, 40)], 9)
    lab[lab == 2] = 0
    lab[40:52, 30:56] = 2  # not symmetric
    rotated = rotate_offsets(torch.from_numpy(centre_offsets(lab)), k).numpy()
    expected = centre_offsets(np.rot90(lab, k).copy())
    np.testing.assert_allclose(rotated, expected, atol=1e-4)


def test_centre_offsets_point_to_the_anchor_centroid():
    lab = np.zeros((20, 40), int)
    lab[5:15, 5:35] = 1
    anchors = np.zeros_like(lab)
    anchors[8:12, 8:12] = 7  # the nucleus sits at the left end of the cell
    off = centre_offsets(lab, anchors)
    yy, xx = np.indices(lab.shape)
    m = lab == 1
    np.testing.assert_allclose(yy[m] + off[0][m], 9.5, atol=1e-4)
    np.testing.assert_allclose(xx[m] + off[1][m], 9.5, atol=1e-4)


def test_seeded_instances_follow_votes_and_fall_back_to_the_nearest_seed():
    lab = np.zeros((40, 80), int)
    lab[5:35, 5:40] = 1
    lab[5:35, 40:75] = 2
    nuclei = np.zeros_like(lab)
    nuclei[15:25, 12:22] = 1
    nuclei[15:25, 58:68] = 2
    off = centre_offsets(lab, nuclei)
    out = instances_from_offsets((lab > 0).astype(float), off, seeds=nuclei, min_area=50, max_vote_distance=3)
    assert (out == lab).all()
    # votes thrown far away from every nucleus: each pixel goes to the nucleus nearest to it
    out = instances_from_offsets((lab > 0).astype(float), off + 100, seeds=nuclei, min_area=50, max_vote_distance=3)
    assert (out[lab > 0] > 0).all() and out[20, 10] != out[20, 70]


def test_a_seed_keeps_its_pixels_where_the_probability_is_low():
    """A nucleus in a faint part of the field still gets its cell: seed pixels count as foreground."""
    probability = np.zeros((30, 60))
    probability[5:25, 5:25] = 1.0  # one bright cell; the second nucleus sits where the field is dark
    seeds = np.zeros((30, 60), int)
    seeds[12:18, 12:18] = 1
    seeds[10:20, 40:50] = 2
    labels = instances_from_offsets(probability, np.zeros((2, 30, 60)), seeds=seeds, min_area=20)
    assert labels.max() == 2
    assert (labels[10:20, 40:50] > 0).all() and (labels[10:20, 40:50] != labels[15, 15]).all()


def test_a_seed_keeps_its_cell_however_small():
    probability = np.zeros((30, 60))
    probability[5:25, 5:25] = 1.0
    seeds = np.zeros((30, 60), int)
    seeds[12:18, 12:18] = 1
    seeds[14:16, 40:42] = 2  # a 4-pixel nucleus, far below min_area
    labels = instances_from_offsets(probability, np.zeros((2, 30, 60)), seeds=seeds, min_area=20)
    assert labels.max() == 2 and (labels[14:16, 40:42] > 0).all()
