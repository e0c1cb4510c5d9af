import numpy as np
import pytest

import jointseg as jg


def test_spatial_entropy_matches_the_formula():
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, size=(30, 6))
    x[:, 5] = 0
    x[0, 5] = 3  # too few transcripts: no score
    out = jg.tl.spatial_entropy(x, min_counts=10)
    for g in range(5):
        n = x[:, g].sum()
        p = x[:, g][x[:, g] > 0] / n
        expected = (-(p * np.log(p)).sum() + ((x[:, g] > 0).sum() - 1) / (2 * n)) / np.log(30)
        assert out[g] == pytest.approx(expected)
    assert np.isnan(out[5])


@pytest.mark.parametrize("labels", ["true_cells", "expanded"])
def test_type_specific_genes_rank_first_and_noise_genes_last(labels):
    sdata = jg.datasets.synthetic(shape=(512, 512), n_cells=70, n_cell_types=3, genes_per_type=5, n_noise_genes=5,
                                  seed=4)  # fmt: skip
    if labels == "expanded":
        jg.pp.nuclei(sdata, image_key="morphology")
        jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", key_added="expanded",
                             max_distance_um=2.0)  # fmt: skip
    else:
        jg.tl.aggregate(sdata, labels_key=labels, points_key="transcripts")
    jg.tl.gene_scores(sdata)
    var = sdata["table"].var.sort_values("jg_entropy_rank")
    specific = [g.startswith("T") for g in var.index]
    assert sum(specific[:15]) / 15 >= 0.95  # precision@15 of the 15 type-specific genes
    assert all(g.startswith("noise") for g in var.index[-5:])
    assert sdata["table"].uns["jointseg"]["gene_scores"]["n_scored"] == 20


def test_rare_genes_are_unscored_and_ranked_last(segmented):
    table = segmented["table"]
    jg.tl.gene_scores(segmented, min_counts=10**9)
    assert table.var["jg_entropy"].isna().all()
    assert sorted(table.var["jg_entropy_rank"]) == list(range(1, table.n_vars + 1))


def test_gene_scores_bad_inputs(segmented):
    with pytest.raises(KeyError, match="No table 'nope'"):
        jg.tl.gene_scores(segmented, table_key="nope")
    with pytest.raises(KeyError, match="no layer"):
        jg.tl.gene_scores(segmented, layer="raw")
    segmented["one"] = segmented["table"][:1].copy()
    with pytest.raises(ValueError, match="at least 2"):
        jg.tl.gene_scores(segmented, table_key="one")
