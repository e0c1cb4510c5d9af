import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import jointseg as jg

MARKERS = {"T cells": ["T0_0", "T0_1"], "Fibroblasts": ["T1_0", "T1_1"], "Endothelial cells": ["T2_0", "T2_1"]}


def test_one_row_per_cluster_with_the_winner_outlined():
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25, seed=3)
    jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    jg.tl.pseudolabels(sdata, markers=MARKERS, fallback_markers=None, min_votes=1, min_counts=1)
    clusters = sdata["table"].uns["jointseg"]["pseudolabels"]["clusters"]
    ax = jg.pl.cluster_votes(sdata)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == len(clusters) and all("margin" in r for r in rows)
    assert len(ax.patches) == sum(c["label"] != "Unknown" for c in clusters.values())
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="pseudolabels"):
        jg.pl.cluster_votes(jg.datasets.synthetic(shape=(64, 64), n_cells=2), table_key="truth")


def test_a_neoplastic_cluster_outlines_its_epithelial_vote_and_gives_its_q_value():
    sdata = jg.datasets.synthetic(shape=(320, 320), n_cells=40, seed=4)
    jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    epithelial = {"Luminal epithelial cells": [f"T0_{k}" for k in range(5)], "Fibroblasts": MARKERS["Fibroblasts"]}
    jg.tl.pseudolabels(sdata, markers=epithelial, cancer=epithelial["Luminal epithelial cells"], n_cancer_top=10,
                       fallback_markers=None, min_votes=1, min_counts=1, resolution=1.0)  # fmt: skip
    ax = jg.pl.cluster_votes(sdata)
    neoplastic = [t.get_text() for t in ax.get_yticklabels() if "Neoplastic" in t.get_text()]
    assert neoplastic and all("cancer q" in row for row in neoplastic)
    classes = [t.get_text() for t in ax.get_xticklabels()]
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == len(neoplastic)
    assert all(classes[round(p.get_x() + 0.5)] == "Epithelial" for p in dashed)
    plt.close(ax.figure)
