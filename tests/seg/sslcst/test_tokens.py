import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from jointseg._core.transcripts import build_transcript_index
from jointseg.datasets._xenium import xenium_like_sdata
from jointseg.seg.sslcst.tokens import BinTable, NucleusCentres, neighbourhoods, nucleus_centres


@pytest.fixture
def index():
    # transcripts at pixel (y, x) with a gene; bins of 2 px
    rows = [(0, 0, "a"), (1, 1, "a"), (1, 0, "b"), (4, 4, "b"), (5, 9, "c"), (5, 9, "c"), (9, 9, "a")]
    points = pd.DataFrame(
        {
            "y": [float(r[0]) for r in rows],
            "x": [float(r[1]) for r in rows],
            "z": 0.0,
            "feature_name": pd.Categorical([r[2] for r in rows], categories=["a", "b", "c"]),
        }
    )
    sdata = xenium_like_sdata(np.zeros((10, 10), np.uint16), points, pixel_size=1.0, chunks=10)
    return build_transcript_index(sdata, "transcripts", "morphology", shape=(10, 10))


def test_bin_table_rows_hold_each_bins_genes_and_log_counts(index):
    table = BinTable.read(index, (0, 5, 0, 5), bin_size=2, gene_lut=np.arange(3))
    assert list(zip(table.y.tolist(), table.x.tolist(), strict=True)) == [(0, 0), (2, 2), (2, 4), (4, 4)]
    genes, offsets, weights = table.bags(np.arange(len(table)))
    assert offsets.tolist() == [0, 2, 3, 4]
    assert genes.tolist() == [0, 1, 1, 2, 0]
    np.testing.assert_allclose(weights, np.log1p([2, 1, 1, 2, 1]))
    genes, offsets, weights = table.bags(np.array([2, 0]))  # any rows, in any order
    assert genes.tolist() == [2, 0, 1] and offsets.tolist() == [0, 1]
    dropped = BinTable.read(index, (0, 5, 0, 5), bin_size=2, gene_lut=np.array([0, -1, -1]))
    assert len(dropped) == 2  # genes left out of the lookup are not tokens


def test_concatenated_tables_keep_their_bags(index):
    a = BinTable.read(index, (0, 2, 0, 5), bin_size=2, gene_lut=np.arange(3))
    b = BinTable.read(index, (2, 5, 0, 5), bin_size=2, gene_lut=np.arange(3))
    both = BinTable.concat([a, b])
    whole = BinTable.read(index, (0, 5, 0, 5), bin_size=2, gene_lut=np.arange(3))
    for field in ("y", "x", "offsets", "genes", "weights"):
        np.testing.assert_array_equal(getattr(both, field), getattr(whole, field))


def test_neighbourhoods_list_the_centre_then_the_nearest_bins_within_the_radius(index):
    table = BinTable.read(index, (0, 5, 0, 5), bin_size=2, gene_lut=np.arange(3))  # bins (0,0) (2,2) (2,4) (4,4)
    dist = np.array([-1.0, 0.5, 1.0, 2.0], np.float32)
    found = neighbourhoods(table, dist, np.array([2, 1]), np.array([2, 1]), np.array([0.5, 0.3], np.float32),
                           n_neighbours=2, radius=2.5)  # fmt: skip
    # centre (2, 2) is a non-empty bin: token 0 is itself; then (2, 4) and (4, 4)? no: (4, 4) is 2.83 away
    assert found.token_bin[0].tolist() == [1, 2, -1]
    assert found.valid[0].tolist() == [True, True, False]
    np.testing.assert_allclose(found.position[0, 1], [0.0, 2 / 2.5])
    np.testing.assert_allclose(found.distance[0, :2], [0.5, 1.0])
    # centre (1, 1) is empty: token 0 has no bin; its nearest are (0, 0) and (2, 2), both 1.41 away
    assert found.token_bin[1, 0] == -1 and sorted(found.token_bin[1, 1:].tolist()) == [0, 1]
    assert found.distance[1, 0] == pytest.approx(0.3)
    batch = found.batch(table, np.array([1]))
    assert batch.token_bin.shape == (1, 3) and batch.token_bin[0, 0] == -1
    assert len(batch.offsets) == 2  # the two bins the batch uses, and no others


def test_nucleus_centres_match_scipy_and_give_signed_distances():
    labels = np.zeros((40, 40), np.int64)
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 10) ** 2 + (xx - 12) ** 2 <= 16] = 3
    labels[(yy - 30) ** 2 + (xx - 25) ** 2 <= 25] = 8
    centres = nucleus_centres(da.from_array(labels, chunks=16), bin_size=2)
    assert centres.ids.tolist() == [3, 8]
    expected = np.array(ndi.center_of_mass(labels > 0, labels, [3, 8]))
    np.testing.assert_allclose(centres.y * 2 + 0.5, expected[:, 0])
    np.testing.assert_allclose(centres.x * 2 + 0.5, expected[:, 1])
    np.testing.assert_allclose(centres.radius * 2, np.sqrt(np.bincount(labels.ravel())[[3, 8]] / np.pi))
    inside = centres.signed_distance(centres.y[:1], centres.x[:1], scale=1.0)
    assert inside[0] == pytest.approx(-centres.radius[0])
    far = centres.signed_distance(np.array([100.0]), np.array([100.0]), scale=1.0, cap=4.0)
    assert far[0] == 4.0
    none = NucleusCentres(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    assert none.signed_distance(np.zeros(2), np.zeros(2), scale=1.0).tolist() == [4.0, 4.0]


def test_tokens_do_not_depend_on_the_block_that_reads_them():
    # a dense lattice: many bins are equally far from a centre, and ties must break the same way
    rng = np.random.default_rng(0)
    n = 400
    y, x = np.divmod(rng.permutation(30 * 30)[:n], 30)
    table = BinTable(y=y, x=x, offsets=np.arange(n + 1), genes=np.zeros(n, np.int64), weights=np.ones(n, np.float32))
    part = np.flatnonzero((y < 20) & (x < 22))  # the bins another block would read around the same centre
    sub = BinTable(y=y[part], x=x[part], offsets=np.arange(len(part) + 1), genes=np.zeros(len(part), np.int64),
                   weights=np.ones(len(part), np.float32))  # fmt: skip
    centre = (np.array([10]), np.array([11]))
    kw = {"n_neighbours": 12, "radius": 6.0}
    whole = neighbourhoods(table, np.zeros(n), *centre, np.zeros(1), **kw)
    block = neighbourhoods(sub, np.zeros(len(part)), *centre, np.zeros(1), **kw)
    as_whole = np.where(block.token_bin >= 0, part[np.maximum(block.token_bin, 0)], -1)
    np.testing.assert_array_equal(as_whole, whole.token_bin)
