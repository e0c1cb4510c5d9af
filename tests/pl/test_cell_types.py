import matplotlib

matplotlib.use("Agg")

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
    categories = list(labelled["table"].obs["cell_type"].cat.categories)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == categories
    fill = ax.images[1].get_array()
    labels = labelled["true_cells"].values
    assert (fill[..., 3][labels > 0] > 0).all() and (fill[..., 3][labels == 0] == 0).all()
    cell = int(labelled["table"].obs["cell_id"].iloc[0])
    colours = {tuple(np.round(c, 3)) for c in fill[labels == cell][:, :3]}
    assert len(colours) == 1  # one colour per cell


def test_marker_dotplot_shows_each_class_markers(labelled):
    axes = jg.pl.marker_dotplot(labelled, markers=MARKERS, n_genes=2)
    genes = {t.get_text() for t in axes["mainplot_ax"].get_xticklabels()}
    assert genes == {"T0_0", "T0_1", "T1_0", "T1_1", "T2_0", "T2_1"}


def test_missing_column_is_a_clear_error(labelled):
    with pytest.raises(KeyError, match="pseudolabels"):
        jg.pl.cell_types(labelled, labels_key="true_cells", key="nope")
