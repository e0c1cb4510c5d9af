import numpy as np
import pandas as pd
import pytest
import squidpy as sq

import jointseg as jg

#: The synthetic slide's type-specific genes as three lineages.
MARKERS = {
    "T cells": [f"T0_{k}" for k in range(5)],
    "Fibroblasts": [f"T1_{k}" for k in range(5)],
    "Endothelial cells": [f"T2_{k}" for k in range(5)],
}
EXPECTED = {"type_0": "Inflammatory", "type_1": "Connective", "type_2": "Endothelial"}
OPTS = {"fallback_markers": None, "min_votes": 1, "min_counts": 1}


@pytest.fixture
def cells():
    sdata = jg.datasets.synthetic(shape=(320, 320), n_cells=40, seed=4)
    jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    return sdata


def _truth(sdata):
    truth = sdata["truth"].obs.set_index("cell_id")["cell_type"].astype(str)
    return truth.reindex(sdata["table"].obs["cell_id"]).map(EXPECTED).to_numpy()


@pytest.mark.smoke
def test_recovers_the_lineages_of_synthetic_cells(cells):
    jg.tl.pseudolabels(cells, markers=MARKERS, **OPTS)
    obs = cells["table"].obs
    assert isinstance(obs["cell_type"].dtype, pd.CategoricalDtype)
    assert isinstance(obs["leiden"].dtype, pd.CategoricalDtype)
    assert (obs["cell_type"].astype(str).to_numpy() == _truth(cells)).mean() >= 0.9
    clusters = cells["table"].uns["jointseg"]["pseudolabels"]["clusters"]
    assert sum(c["n_cells"] for c in clusters.values()) == cells["table"].n_obs
    assert all(c["vote_source"] == "markers" for c in clusters.values())


def test_marker_votes_weight_by_rank():
    table = pd.DataFrame({"gene": ["A", "B", "C"], "coarse_class": ["Epithelial", "Connective", "Epithelial"]})
    votes = jg.tl.marker_votes(["A", "X", "C", "B"], table)  # N=4: A votes 4, C votes 2, B votes 1
    assert votes.to_dict() == {"Connective": 1, "Epithelial": 6}


def test_fallback_then_unknown(cells):
    useless = {"Hepatocytes": ["NOT_A_GENE"]}
    jg.tl.pseudolabels(cells, markers=useless, fallback_markers=MARKERS, min_votes=1, min_counts=1)
    clusters = cells["table"].uns["jointseg"]["pseudolabels"]["clusters"]
    assert {c["vote_source"] for c in clusters.values()} == {"fallback"}
    jg.tl.pseudolabels(cells, markers=useless, **OPTS)
    assert set(cells["table"].obs["cell_type"]) == {"Unknown"}
    jg.tl.pseudolabels(cells, markers=MARKERS, fallback_markers=None, min_votes=10_000, min_counts=1)
    assert set(cells["table"].obs["cell_type"]) == {"Unknown"}


def test_ambiguous_votes_leave_a_cluster_unknown_with_its_margin(cells):
    jg.tl.pseudolabels(cells, markers=MARKERS, **OPTS)
    obs, info = cells["table"].obs, cells["table"].uns["jointseg"]["pseudolabels"]
    assert all(c["margin"] > 0.5 for c in info["clusters"].values())  # clean lineages: clear leads
    by_cluster = {name: c["margin"] for name, c in info["clusters"].items()}
    np.testing.assert_allclose(obs["cell_type_margin"].to_numpy(), obs["leiden"].astype(str).map(by_cluster).to_numpy())
    # the T-cell genes mark two classes equally (Inflammatory, Connective): those votes tie, stay Unknown
    tied = {**MARKERS, "Fibroblasts": MARKERS["T cells"]}
    jg.tl.pseudolabels(cells, markers=tied, **OPTS)
    clusters = cells["table"].uns["jointseg"]["pseudolabels"]["clusters"].values()
    ambiguous = [c for c in clusters if c["vote_source"] == "ambiguous"]
    assert ambiguous and all(c["label"] == "Unknown" and c["margin"] < 0.1 for c in ambiguous)
    lymphoid = _truth(cells) == "Inflammatory"
    assert (cells["table"].obs["cell_type"].astype(str).to_numpy()[lymphoid] == "Unknown").mean() > 0.9
    assert jg.tl.vote_margin(pd.Series({"A": 3.0, "B": 3.0})) == 0.0


def test_neoplastic_refinement(cells):
    epithelial = {
        "Luminal epithelial cells": MARKERS["T cells"],
        **{k: v for k, v in MARKERS.items() if k != "T cells"},
    }
    jg.tl.pseudolabels(cells, markers=epithelial, cancer=MARKERS["T cells"], n_cancer_top=10, **OPTS)
    labels = cells["table"].obs["cell_type"].astype(str).to_numpy()
    truth = _truth(cells)
    assert (labels[truth == "Inflammatory"] == "Neoplastic").mean() >= 0.9
    jg.tl.pseudolabels(cells, markers=epithelial, cancer=[], **OPTS)
    assert "Neoplastic" not in set(cells["table"].obs["cell_type"])


def test_shipped_and_file_marker_tables(tmp_path):
    breast = jg.tl.marker_table("breast")
    assert {"Epithelial", "Inflammatory", "Connective", "Endothelial"} <= set(breast["coarse_class"])
    canonical = jg.tl.canonical_markers("mouse")
    assert "Ptprc" in set(canonical["gene"]) and canonical["source"].ne("").all()
    assert "MKI67" in jg.tl.cancer_genes()
    panglao = tmp_path / "PanglaoDB_markers.tsv"
    pd.DataFrame({
        "species": ["Mm Hs", "Hs", "Mm"], "official gene symbol": ["CD3E", "LUM", "ALB"],
        "cell type": ["T cells", "Fibroblasts", "Hepatocytes"], "ubiquitousness index": [0.01, 0.2, 0.0],
    }).to_csv(panglao, sep="\t", index=False)  # fmt: skip
    table = jg.tl.marker_table(panglao)
    assert table[["gene", "coarse_class"]].values.tolist() == [["CD3E", "Inflammatory"]]  # LUM too ubiquitous
    cellmarker = tmp_path / "Cell_marker_Human.csv"
    pd.DataFrame({"species": ["Human", "Mouse"], "cell_name": ["Endothelial cell", "B cell"],
                  "Symbol": ["PECAM1", "Cd19"]}).to_csv(cellmarker, index=False)  # fmt: skip
    assert jg.tl.marker_table(cellmarker)[["gene", "coarse_class"]].values.tolist() == [["PECAM1", "Endothelial"]]
    with pytest.raises(ValueError, match="neither a PanglaoDB"):
        pd.DataFrame({"a": [1]}).to_csv(tmp_path / "x.csv", index=False)
        jg.tl.marker_table(tmp_path / "x.csv")
    with pytest.raises(KeyError, match="available"):
        jg.tl.marker_table("kidney")


@pytest.mark.smoke
def test_squidpy_chain_after_segmentation(cells):
    jg.pp.nuclei(cells, image_key="morphology")
    jg.seg.expand_nuclei(cells, key_added="cells", shapes_key="cell_shapes", table_key="cell_table", overwrite=True)
    jg.tl.pseudolabels(cells, table_key="cell_table", markers=MARKERS, **OPTS)
    table = cells["cell_table"]
    sq.gr.spatial_neighbors_delaunay(table)
    sq.gr.nhood_enrichment(table, cluster_key="cell_type", n_perms=20, seed=0, show_progress_bar=False)
    z = table.uns["cell_type_nhood_enrichment"]["zscore"]
    assert z.shape == (len(table.obs["cell_type"].cat.categories),) * 2 and np.isfinite(z).all()
    # the same on the SpatialData, naming the table
    sq.gr.spatial_neighbors_knn(cells, table_key="cell_table", elements_to_coordinate_systems={"cells": "global"},
                                n_neighs=5)  # fmt: skip
    sq.gr.nhood_enrichment(cells, cluster_key="cell_type", table_key="cell_table", n_perms=20, seed=0,
                           show_progress_bar=False)  # fmt: skip
    assert cells["cell_table"].obsp["spatial_connectivities"].shape == (table.n_obs, table.n_obs)
    assert np.isfinite(cells["cell_table"].uns["cell_type_nhood_enrichment"]["zscore"]).all()


def test_bad_inputs(cells):
    with pytest.raises(KeyError, match="No table"):
        jg.tl.pseudolabels(cells, table_key="nope")
    with pytest.raises(ValueError, match="too few to cluster"):
        jg.tl.pseudolabels(cells, markers=MARKERS, min_counts=10**9)
    with pytest.raises(ValueError, match="coarse classes"):
        jg.tl.pseudolabels(cells, markers=pd.DataFrame({"cell_type": ["x"], "gene": ["A"], "coarse_class": ["Alien"]}))
