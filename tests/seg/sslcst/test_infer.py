import numpy as np

from jointseg.seg.sslcst.infer import _adaptive_lattice


def _field(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Network-like outputs of fine lattice points: foreground 1 inside a disc, 0 outside; 16
    direction classes pointing at the disc's centre (one-hot)."""
    dy, dx = 20.0 - iy, 23.0 - ix
    fg = (np.hypot(dy, dx) < 12).astype(np.float32)
    cls = (np.mod(np.arctan2(dy, dx), 2 * np.pi) / (np.pi / 8)).astype(int) % 16
    probs = np.eye(16, dtype=np.float32)[cls].T
    return np.concatenate([fg[None], probs])


class _Counter:
    def __init__(self):
        self.points = 0

    def __call__(self, iy, ix):
        self.points += len(iy)
        return _field(iy, ix)


def test_adaptive_lattice_is_exact_where_corners_disagree_and_cheaper():
    fy, fx = np.arange(0, 45), np.arange(0, 50)
    full = _field(*[g.ravel() for g in np.meshgrid(fy, fx, indexing="ij")]).reshape(-1, len(fy), len(fx))
    count = _Counter()
    out = _adaptive_lattice(count, fy, fx, (44, 49), 2)
    assert count.points < 0.75 * fy.size * fx.size
    # Foreground crossings and direction changes are computed, so the foreground is exact ...
    np.testing.assert_array_equal(out[0] > 0.5, full[0] > 0.5)
    # ... and directions turn by at most three classes between the corners of what was interpolated.
    gap = np.abs(out[1:].argmax(axis=0) - full[1:].argmax(axis=0))
    assert np.minimum(gap, 16 - gap).max() <= 3


def test_adaptive_lattice_blocks_agree_with_the_whole():
    last = (44, 49)
    whole = _adaptive_lattice(_field, np.arange(45), np.arange(50), last, 4)
    for ys, xs in [((0, 17), (0, 30)), ((17, 45), (30, 50)), ((9, 31), (5, 50))]:
        fy, fx = np.arange(*ys), np.arange(*xs)
        part = _adaptive_lattice(_field, fy, fx, last, 4)
        np.testing.assert_allclose(part, whole[:, ys[0] : ys[1], xs[0] : xs[1]], atol=1e-6)
