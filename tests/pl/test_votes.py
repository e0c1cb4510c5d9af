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
