import numpy as np
import pytest
from scipy import sparse

from jointseg._core.expression_model import fit_expression_model
from jointseg.seg.sslcst.postprocess import direction_class
from jointseg.seg.sslcst.samples import balance, erode_labels, select_samples, tied_cytoplasm
from jointseg.seg.sslcst.tokens import BinTable, NucleusCentres


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


def _two_types():
    """Nucleus 1 (x = 0) expresses gene 0, nuclei 2 (x = 10) and 3 (x = 20) gene 1; 40 transcripts each."""
    counts = sparse.csr_matrix(np.array([[40, 0], [0, 40], [0, 40]]))
    model = fit_expression_model(np.array([1, 2, 3]), counts, counts, np.ones(3), np.array([5, 5]), 1.0, n_types=1,
                                 prior_counts=1.0)  # fmt: skip
    centres = NucleusCentres(np.array([1, 2, 3]), np.zeros(3), np.array([0.0, 10.0, 20.0]), np.ones(3))
    return model, centres


def _table(x, genes, counts):
    """One bin per entry at row 0, column ``x``, holding ``counts`` transcripts of ``genes``."""
    return BinTable(y=np.zeros(len(x), np.int64), x=np.asarray(x), offsets=np.arange(len(x) + 1),
                    genes=np.asarray(genes), weights=np.log1p(np.asarray(counts, np.float32)))  # fmt: skip


def test_cytoplasm_bins_are_tied_to_the_nucleus_their_genes_point_to():
    model, centres = _two_types()
    nucleus = np.zeros((1, 24), np.int64)
    # x=6: nearer nucleus 2, but 5 transcripts of gene 0 tie it to nucleus 1; x=15: two nuclei of gene 1's type,
    # ambiguous; x=4 with a single transcript: too little evidence.
    table = _table([6, 15, 4], [0, 1, 0], [5, 5, 1])
    found = tied_cytoplasm(table, nucleus, (0, 0), centres, np.full(3, 9.0), model, margin=2.0)
    np.testing.assert_array_equal(found.x, [6])
    np.testing.assert_array_equal(found.direction, direction_class(np.array([0.0]), np.array([-6.0])))
    assert (found.foreground == 1).all()


def test_cytoplasm_samples_respect_the_reach_the_nuclei_and_the_window():
    model, centres = _two_types()
    table = _table([6, 6], [0, 0], [5, 5])
    table = BinTable(y=np.array([0, 5]), x=table.x, offsets=table.offsets, genes=table.genes, weights=table.weights)
    nucleus = np.zeros((1, 24), np.int64)
    # Nucleus 1 reaches 5 bins only: the bin at 6 is out of its reach, and nucleus 2 does not explain gene 0.
    reach = np.array([5.0, 9.0, 9.0])
    assert len(tied_cytoplasm(table, nucleus, (0, 0), centres, reach, model, margin=2.0)) == 0
    nucleus[0, 6] = 2  # inside a nucleus: the paper's samples, not these
    assert len(tied_cytoplasm(table, nucleus, (0, 0), centres, np.full(3, 9.0), model, margin=2.0)) == 0
    # The second bin (row 5) is outside the window: never a sample.
    nucleus[0, 6] = 0
    assert len(tied_cytoplasm(table, nucleus, (0, 0), centres, np.full(3, 9.0), model, margin=2.0)) == 1
    no_nuclei = NucleusCentres(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    assert len(tied_cytoplasm(table, nucleus, (0, 0), no_nuclei, np.zeros(0), model, margin=2.0)) == 0
