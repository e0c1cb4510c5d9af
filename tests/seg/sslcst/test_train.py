import numpy as np

from jointseg.seg.sslcst.postprocess import direction_class
from jointseg.seg.sslcst.train import augment, negative_distance


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
