import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from jointseg._core.tables import raw_counts


@pytest.mark.smoke
def test_the_counts_layer_wins_and_x_with_integers_stands_in_for_it():
    counts = sparse.csr_matrix(np.array([[1, 0], [2, 3]], np.float32))
    table = ad.AnnData(counts.copy())
    assert raw_counts(table, "counts") is table.X  # sopa's tables: counts in X only
    table.layers["counts"] = counts * 2
    assert raw_counts(table, "counts").sum() == 12
    assert raw_counts(table, None).sum() == 6


def test_normalised_x_is_not_taken_for_counts():
    table = ad.AnnData(np.array([[0.5, 1.2], [2.0, 0.0]], np.float32))
    with pytest.raises(KeyError, match="layer=None"):
        raw_counts(table, "counts")
    with pytest.raises(KeyError, match="no layer 'raw'"):
        raw_counts(ad.AnnData(np.ones((2, 2))), "raw")
