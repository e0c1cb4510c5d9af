import numpy as np
import pytest

from jointseg.seg.sslcst.postprocess import direction_class
from jointseg.seg.sslcst.tokens import NucleusCentres
from jointseg.seg.sslcst.train import augment, balance, erode_labels, negative_distance, select_samples


def test_erosion_keeps_pixels_whose_disc_has_one_label():
    labels = np.zeros((9, 12), np.int64)
    labels[1:8, 1:6] = 1
    labels[1:8, 6:11] = 2  # touching: the shared border erodes away on both sides
    eroded = erode_labels(labels, 1)
    assert (eroded[2:7, 2:5] == 1).all() and (eroded[2:7, 7:10] == 2).all()
    assert (eroded[:, 5:7] == 0).all() and (eroded[1] == 0).all()
    np.testing.assert_array_equal(erode_labels(labels, 0), labels)


@pytest.fixture
def window():
    """A 20 x 30-bin window at bin (100, 200): one nucleus (id 5, centroid (105, 206)), transcripts
    in its left half and in a dark strip on the right, no stain on the right.
    """
    eroded = np.zeros((20, 30), np.int64)
    eroded[3:8, 4:9] = 5
    nucleus = np.zeros_like(eroded)
    nucleus[2:9, 3:10] = 5
    expressed = np.zeros((20, 30), bool)
    expressed[:, :6] = True
    expressed[:, 27:] = True
    stain = np.where(np.arange(30) < 15, 1.0, 0.0)[None].repeat(20, 0)
    centres = NucleusCentres(np.array([5]), np.array([105.0]), np.array([206.0]), np.array([3.0]))
    return eroded, nucleus, expressed, stain, centres


def test_positives_are_expressing_eroded_nucleus_bins_labelled_towards_the_centroid(window):
    eroded, nucleus, expressed, stain, centres = window
    pos, _ = select_samples(eroded, nucleus, expressed, stain, (100, 200), centres, negative_distance=12, dark=0.5)
    assert len(pos) == 5 * 2  # rows 3-7, columns 4-5
    assert set(pos.y.tolist()) == set(range(103, 108)) and set(pos.x.tolist()) == {204, 205}
    assert (pos.foreground == 1).all()
    expected = direction_class(105.0 - pos.y, 206.0 - pos.x)
    np.testing.assert_array_equal(pos.direction, expected)
    assert pos.direction[(pos.y == 105) & (pos.x == 204)][0] == 0  # the centroid is straight right: +x


def test_direction_is_not_learned_at_the_centroid(window):
    eroded, nucleus, expressed, stain, centres = window
    expressed[:, :] = True
    pos, _ = select_samples(eroded, nucleus, expressed, stain, (100, 200), centres, negative_distance=12, dark=0.5)
    at_centre = (pos.y == 105) & (pos.x == 206)
    assert pos.direction[at_centre].tolist() == [-1]
    assert (pos.direction[~at_centre] >= 0).all()


def test_negatives_are_far_dark_empty_bins_outside_nuclei(window):
    eroded, nucleus, expressed, stain, centres = window
    _, neg = select_samples(eroded, nucleus, expressed, stain, (100, 200), centres, negative_distance=12, dark=0.5)
    far = np.hypot(neg.y - 105.0, neg.x - 206.0) > 12
    assert len(neg) > 0 and far.all()
    assert (neg.x >= 215).all() and (neg.x < 227).all()  # dark, and the strip from x = 227 has transcripts
    assert (neg.foreground == 0).all() and (neg.direction == -1).all()
    _, none = select_samples(eroded, nucleus, expressed, stain, (100, 200), centres, negative_distance=40, dark=0.5)
    assert len(none) == 0


def test_balance_draws_as_many_negatives_as_positives():
    rng = np.random.default_rng(0)
    pos, neg = balance(30, 500, max_per_class=1000, rng=rng)
    assert len(pos) == len(neg) == 30 and len(set(neg.tolist())) == 30 and neg.max() < 500
    pos, neg = balance(3000, 500, max_per_class=100, rng=rng)
    assert len(pos) == len(neg) == 100
    with pytest.raises(ValueError, match=r"no negative.*negative_distance_um"):
        balance(10, 0, max_per_class=100, rng=rng)
    with pytest.raises(ValueError, match="no positive"):
        balance(0, 10, max_per_class=100, rng=rng)


def test_augmentation_turns_positions_and_direction_classes_together():
    rng = np.random.default_rng(1)
    angles = (np.arange(16) + 0.5) * 2 * np.pi / 16
    # each sample's neighbour sits where its direction class points
    position = np.zeros((16, 2, 2), np.float32)
    position[:, 1] = np.c_[np.sin(angles), np.cos(angles)] * 0.5
    direction = np.arange(16)
    for _ in range(5):
        turned, classes = augment(position, direction, rng)
        np.testing.assert_array_equal(direction_class(turned[:, 1, 0], turned[:, 1, 1]), classes)
        np.testing.assert_allclose(turned[:, 0], 0.0, atol=1e-7)  # the centre stays put
    _, masked = augment(position[:2], np.array([-1, 3]), rng)
    assert masked[0] == -1


def test_negative_distance_is_lowered_only_where_too_few_bins_lie_that_far():
    far = np.array([2.0, 4.0, 6.0, 8.0, 20.0, 30.0])
    assert negative_distance(far, preferred=15.0, floor=3.0, wanted=2) == 15.0  # enough beyond 15
    chosen = negative_distance(far, preferred=15.0, floor=3.0, wanted=4)
    assert (far > chosen).sum() == 4 and 4.0 < chosen < 6.0
    assert negative_distance(far, preferred=15.0, floor=7.0, wanted=5) == 7.0  # never below the floor
    assert negative_distance(np.zeros(0), preferred=15.0, floor=7.0, wanted=5) == 7.0
    assert negative_distance(far, preferred=5.0, floor=5.0, wanted=6) == 5.0  # a given distance is kept
