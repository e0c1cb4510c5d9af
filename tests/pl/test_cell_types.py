import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import jointseg as jg

MARKERS = {"T cells": ["T0_0", "T0_1"], "Fibroblasts": ["T1_0", "T1_1"], "Endothelial cells": ["T2_0", "T2_1"]}


@pytest.fixture
def labelled():
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25, seed=3)
    jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    jg.tl.pseudolabels(sdata, markers=MARKERS, fallback_markers=None, min_votes=1, min_counts=1)
    return sdata


def test_cells_coloured_by_type_with_a_legend(labelled):
    ax = jg.pl.cell_types(labelled, image_key="morphology", labels_key="true_cells")
    legend = {t.get_text(): tuple(np.round(h.get_facecolor()[0][:3], 3))
              for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)}  # fmt: skip
    assert set(legend) == set(labelled["table"].obs["cell_type"].cat.categories)
    fill = ax.images[1].get_array()  # spatialdata-plot's labels layer, on the labels' pixel grid here
    labels = labelled["true_cells"].values
    assert (fill[..., 3][labels == 0] == 0).all()
    obs = labelled["table"].obs
    for cell, cell_type in zip(obs["cell_id"], obs["cell_type"], strict=True):
        colours = {tuple(np.round(c, 3)) for c in fill[labels == cell][:, :3]}
        assert colours == {legend[cell_type]}  # one colour per cell: its type's


def test_cells_coloured_through_the_polygons_when_the_table_annotates_them(labelled):
    labelled["cells"] = jg.seg.labels_to_shapes(labelled["true_cells"])
    jg.io.annotate_table(labelled, "cells")
    ax = jg.pl.cell_types(labelled, image_key="morphology")
    assert len(ax.images) == 1 and len(ax.collections) >= 1  # the stain, then the filled polygons
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(labelled["table"].obs["cell_type"].cat.categories)


def test_marker_dotplot_shows_each_class_markers(labelled):
    _, ax = plt.subplots()
    axes = jg.pl.marker_dotplot(labelled, markers=MARKERS, n_genes=2, ax=ax)
    assert axes["mainplot_ax"].figure is ax.figure
    genes = {t.get_text() for t in axes["mainplot_ax"].get_xticklabels()}
    assert genes == {"T0_0", "T0_1", "T1_0", "T1_1", "T2_0", "T2_1"}


def test_missing_column_is_a_clear_error(labelled):
    with pytest.raises(KeyError, match="pseudolabels"):
        jg.pl.cell_types(labelled, labels_key="true_cells", key="nope")
