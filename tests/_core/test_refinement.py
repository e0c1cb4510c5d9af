import numpy as np
import pytest
from scipy import sparse

from jointseg._core.refinement import (
    RefineParams,
    SlideCounts,
    _sorted_unique,
    cell_anchors,
    foreground_prior,
    moved_fraction,
    transcript_mean_one,
    upsample_labels,
)


def _reference(bins, s, shape):
    """The tent-weighted argmax written plainly with numpy."""
    h, w = shape
    u, v = (np.arange(h) - (s - 1) / 2) / s, (np.arange(w) - (s - 1) / 2) / s
    i0 = np.clip(np.floor(u).astype(int), 0, bins.shape[0] - 1)
    j0 = np.clip(np.floor(v).astype(int), 0, bins.shape[1] - 1)
    i1, j1 = np.minimum(i0 + 1, bins.shape[0] - 1), np.minimum(j0 + 1, bins.shape[1] - 1)
    fy, fx = np.clip(u - i0, 0, 1)[:, None], np.clip(v - j0, 0, 1)[None, :]
    corners = [bins[np.ix_(i0, j0)], bins[np.ix_(i1, j0)], bins[np.ix_(i0, j1)], bins[np.ix_(i1, j1)]]
    weights = [(1 - fy) * (1 - fx), fy * (1 - fx), (1 - fy) * fx, fy * fx]
    best, best_weight = corners[0], np.zeros((h, w))
    for label in corners:
        total = sum(np.where(other == label, wt, 0.0) for other, wt in zip(corners, weights, strict=True))
        better = total > best_weight
        best, best_weight = np.where(better, label, best), np.where(better, total, best_weight)
    return best


@pytest.mark.parametrize("seed", range(10))
def test_upsampling_equals_the_plain_tent_argmax(seed):
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, 6, (int(rng.integers(1, 25)), int(rng.integers(1, 25))))
    s = int(rng.integers(1, 7))
    shape = (bins.shape[0] * s + int(rng.integers(0, 3)), bins.shape[1] * s)
    np.testing.assert_array_equal(upsample_labels(bins, s, shape), _reference(bins, s, shape))


@pytest.mark.parametrize("largest", [5, 3_000, 10**12])  # dense ids (table pass) and sparse ones (hashing)
def test_sorted_unique_equals_numpys(largest):
    values = np.random.default_rng(0).integers(0, largest, 20_000)
    expected = np.unique(values, return_index=True, return_counts=True)
    for got, want in zip(_sorted_unique(values), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_upsampling_keeps_uniform_regions_and_the_dtype():
    bins = np.full((4, 5), 7, np.uint32)
    out = upsample_labels(bins, 3, (12, 15))
    assert out.dtype == np.uint32 and (out == 7).all()


def test_anchors_of_cells_with_huge_ids():
    """Tiled labels carry ids in the billions; cells without a nucleus still get their deepest
    pixels, without a list as long as the largest id (10**12 entries would not fit in memory).
    """
    labels = np.zeros((9, 20), np.int64)
    labels[:, :9] = 10**12
    labels[:, 11:] = 7
    nuclei = np.zeros_like(labels)
    nuclei[4, 15] = 1
    anchors = cell_anchors(labels, nuclei)
    assert anchors[4, 15] == 7 and (anchors == 7).sum() == 1
    deep = anchors == 10**12
    assert deep[4, 4] and not deep[0].any() and not deep[:, 0].any()


def test_moved_fraction_aligns_cells_by_id():
    old = SlideCounts(np.array([1, 2]), None, sparse.csr_matrix([[4, 0], [0, 4]]), None, np.array([2, 0]), 0, None)
    new = old._replace(ids=np.array([2, 3]), cell=sparse.csr_matrix([[0, 4], [3, 0]]))
    # cell 1's 4 transcripts went to cell 3 (3) and the background's count is unchanged: 4 of 10 moved,
    # but the L1 bound sees 4 leave and 3 arrive.
    assert moved_fraction(old, new) == pytest.approx(3.5 / 10)
    assert moved_fraction(old, old) == 0.0


def test_gene_weights_are_scaled_to_a_mean_of_one_per_transcript():
    weights = transcript_mean_one(np.array([1.0, 3.0, 7.0]), np.array([0, 0, 1, -1, 1, 2]), 3)
    codes = np.array([0, 0, 1, 1, 2])
    assert weights[codes].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(weights / weights[0], [1, 3, 7])
    with pytest.raises(ValueError, match="0 for every gene"):
        transcript_mean_one(np.array([0.0, 0.0, 5.0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="must be 4 finite values"):
        transcript_mean_one(np.ones(3), np.array([3]), 4)
    with pytest.raises(ValueError, match="must be 2 finite values"):
        transcript_mean_one(np.array([1.0, -1.0]), np.array([0]), 2)


def test_foreground_prior_is_clipped_log_odds():
    np.testing.assert_allclose(foreground_prior(np.array([0.5, 0.9, 0.0, 1.0])),
                               [0.0, np.log(9.0), -np.log(99.0), np.log(99.0)])  # fmt: skip
    with pytest.raises(ValueError, match="foreground_weight"):
        RefineParams(foreground_weight=-1.0)
