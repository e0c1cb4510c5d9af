import anndata as ad
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from spatialdata import SpatialData

import jointseg as jg

#: The synthetic slide's type-specific genes as three lineages.
MARKERS = {
    "T cells": [f"T0_{k}" for k in range(5)],
    "Fibroblasts": [f"T1_{k}" for k in range(5)],
    "Endothelial cells": [f"T2_{k}" for k in range(5)],
}
EXPECTED = {"type_0": "Inflammatory", "type_1": "Connective", "type_2": "Endothelial"}
#: Forty cells: the paper's resolution 4.0 (whole sections) would split them into one-cell clusters.
OPTS = {"fallback_markers": None, "min_votes": 1, "min_counts": 1, "resolution": 1.0}


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
    jg.tl.pseudolabels(cells, markers=useless, fallback_markers=MARKERS, min_votes=1, min_counts=1, resolution=1.0)
    clusters = cells["table"].uns["jointseg"]["pseudolabels"]["clusters"]
    assert {c["vote_source"] for c in clusters.values()} == {"fallback"}
    jg.tl.pseudolabels(cells, markers=useless, **OPTS)
    assert set(cells["table"].obs["cell_type"]) == {"Unknown"}
    jg.tl.pseudolabels(cells, markers=MARKERS, fallback_markers=None, min_votes=10_000, min_counts=1, resolution=1.0)
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
    assert "Mki67" in jg.tl.cancer_genes(species="mouse") and "CEACAM6" not in jg.tl.cancer_genes(species="mouse")
    assert set(jg.tl.cancer_genes(programs=["hypoxia"])) < set(jg.tl.cancer_genes())
    assert jg.tl.cancer_gene_sets()["source"].ne("").all()
    with pytest.raises(ValueError, match="Unknown programmes"):
        jg.tl.cancer_genes(programs=["astrology"])
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


#: Lineages of a synthetic breast tumour, in the shipped canonical markers' genes.
LINEAGES = {
    "luminal": ["EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "ELF3", "CLDN4"],
    "basal": ["KRT5", "KRT14", "KRT17", "TP63", "EPCAM"],
    "T": ["PTPRC", "CD3E", "CD3D", "CD2", "TRAC"],
    "fibro": ["LUM", "DCN", "COL1A1", "COL1A2", "PDGFRA"],
    "endo": ["PECAM1", "VWF", "CD93", "CLDN5"],
}
#: What normal luminal cells also express (cancer-set genes at their normal level) and the tumour
#: programme planted on top of the luminal lineage (HER2 amplicon, proliferation, lipogenesis, hypoxia).
NORMAL_LUMINAL_EXTRAS = {"ERBB2": 1.5, "CCND1": 1.5, "MUC1": 2.0, "TACSTD2": 1.5}
TUMOUR_PROGRAMME = {"ERBB2": 12, "GRB7": 6, "CCND1": 5, "MKI67": 3, "TOP2A": 3, "CENPF": 3, "BIRC5": 2,
                    "FASN": 6, "SCD": 8, "CA9": 2, "VEGFA": 2}  # fmt: skip
TYPES = {
    "normal luminal": ("luminal", NORMAL_LUMINAL_EXTRAS),
    "tumour": ("luminal", {**NORMAL_LUMINAL_EXTRAS, **TUMOUR_PROGRAMME}),
    "myoepithelial": ("basal", {}),
    "T cell": ("T", {}),
    "fibroblast": ("fibro", {}),
    "endothelial": ("endo", {}),
}


def _tumour_table(*, n_per_type: int = 150, seed: int = 0, mouse: bool = False) -> tuple[SpatialData, np.ndarray]:
    """Counts of six cell types over a 180-gene panel: lineage markers, 30 cancer-set genes (most
    silent, as in a real panel), 120 filler genes; every gene at an ambient rate of 0.2."""
    rng = np.random.default_rng(seed)
    cancer_in_panel = sorted(set(TUMOUR_PROGRAMME) | set(NORMAL_LUMINAL_EXTRAS)
                             | set(jg.tl.cancer_genes(programs=["invasion_emt"])[:15]))  # fmt: skip
    genes = sorted({g for v in LINEAGES.values() for g in v} | set(cancer_in_panel)) + [
        f"FILLER{i}" for i in range(120)
    ]
    index = {g: i for i, g in enumerate(genes)}
    rows, truth = [], []
    for name, (lineage, extras) in TYPES.items():
        rate = np.full(len(genes), 0.2)
        rate[[index[g] for g in LINEAGES[lineage]]] = 5.0
        for gene, value in extras.items():
            rate[index[gene]] = value
        size = rng.lognormal(0, 0.3, (n_per_type, 1))  # cells of different total counts
        rows.append(rng.poisson(rate * size))
        truth += [name] * n_per_type
    if mouse:
        genes = [g if g.startswith("FILLER") else g[:1] + g[1:].lower() for g in genes]
    table = ad.AnnData(np.vstack(rows).astype(np.float32), var=pd.DataFrame(index=genes))
    table.layers["counts"] = table.X.copy()
    return SpatialData(tables={"table": table}), np.array(truth)


@pytest.mark.parametrize("mouse", [False, True])
def test_a_planted_tumour_programme_is_neoplastic_normal_epithelium_is_not(mouse):
    sdata, truth = _tumour_table(mouse=mouse)
    jg.tl.pseudolabels(sdata, markers="canonical", species="mouse" if mouse else "human")  # defaults: resolution 4
    labels = sdata["table"].obs["cell_type"].astype(str).to_numpy()
    assert (labels[truth == "tumour"] == "Neoplastic").mean() >= 0.95
    for normal in ("normal luminal", "myoepithelial"):
        assert (labels[truth == normal] == "Epithelial").mean() >= 0.95, normal
    expected = {"T cell": "Inflammatory", "fibroblast": "Connective", "endothelial": "Endothelial"}
    for name, klass in expected.items():
        assert (labels[truth == name] == klass).mean() >= 0.95, name
    info = sdata["table"].uns["jointseg"]["pseudolabels"]["clusters"].values()
    for cluster in info:  # q only where tested (Epithelial clusters), and below the FDR exactly when Neoplastic
        tested = cluster["label"] in ("Epithelial", "Neoplastic")
        assert np.isnan(cluster["cancer_q"]) != tested
        assert not tested or (cluster["cancer_q"] < 0.05) == (cluster["label"] == "Neoplastic")


def test_a_user_gene_set_from_a_gmt_file_and_a_panel_without_cancer_genes(tmp_path, caplog):
    sdata, truth = _tumour_table(n_per_type=80)
    gmt = tmp_path / "tumour.gmt"
    gmt.write_text("HER2_AMPLICON\tmy notes\tERBB2\tGRB7\nPROLIFERATION\tnone\tMKI67\tTOP2A\tCENPF\n")
    assert jg.tl.gene_set(gmt) == {"ERBB2", "GRB7", "MKI67", "TOP2A", "CENPF"}
    jg.tl.pseudolabels(sdata, markers="canonical", cancer=gmt, resolution=1.0)
    labels = sdata["table"].obs["cell_type"].astype(str).to_numpy()
    assert (labels[truth == "tumour"] == "Neoplastic").mean() >= 0.95
    assert sdata["table"].uns["jointseg"]["pseudolabels"]["n_cancer_genes_in_panel"] == 5
    with caplog.at_level("WARNING", logger="jointseg"):
        jg.tl.pseudolabels(sdata, markers="canonical", cancer=["NOT_IN_PANEL"], resolution=1.0)
    assert "no cluster can become Neoplastic" in caplog.text
    assert "Neoplastic" not in set(sdata["table"].obs["cell_type"])


def test_cancer_enrichment_accounts_for_the_panel():
    cancer = {f"C{i}" for i in range(10)}
    top = ["C0", "C1", "C2", "X0", "X1"]
    small_panel = cancer | {f"X{i}" for i in range(10)}  # half the panel is cancer genes: 3 of 5 is expected
    large_panel = cancer | {f"X{i}" for i in range(990)}
    assert jg.tl.cancer_enrichment(top, cancer, small_panel) > 0.4
    assert jg.tl.cancer_enrichment(top, cancer, large_panel) < 1e-4
