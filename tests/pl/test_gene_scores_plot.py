import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import jointseg as jg


def test_entropy_bars_without_cid(segmented):
    jg.tl.gene_scores(segmented)
    ax = jg.pl.gene_scores(segmented, n_genes=2)
    assert len(ax.patches) == 8
    labels = [t.get_text() for t in ax.get_yticklabels()]
    best = segmented["table"].var["jg_entropy"].idxmin()
    assert labels[-1] == best


def test_cid_heatmap_lists_the_top_genes_of_each_type(segmented):
    table = segmented["table"]
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(table.n_vars, 3))
    scores[0] = np.nan
    table.varm["jg_cid_by_type"] = scores
    table.uns["jointseg"]["cell_labels"]["cid_types"] = ["a", "b", "c"]
    ax = jg.pl.gene_scores(segmented, n_genes=2)
    shown = {t.get_text() for t in ax.get_yticklabels()}
    expected = {table.var_names[int(np.argmax(scores[1:, t])) + 1] for t in range(3)}
    assert expected <= shown and len(shown) <= 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_no_scores_is_a_clear_error(segmented):
    with pytest.raises(KeyError, match="gene_scores"):
        jg.pl.gene_scores(segmented)
