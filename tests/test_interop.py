"""jointseg's tools on a segmentation that another tool made: sopa's polygons and table."""

import numpy as np
import pytest

import jointseg as jg

pytestmark = pytest.mark.smoke  # also run on Python 3.12 with the newest spatialdata (make test-py312)

sopa = pytest.importorskip("sopa")

MARKERS = {"A": ["T0_0", "T0_1", "T0_2"], "B": ["T1_0", "T1_1", "T1_2"], "C": ["T2_0", "T2_1", "T2_2"]}


@pytest.fixture(scope="module")
def sopa_segmented():
    """Polygons with a plain integer index, aggregated by sopa (which gives them Explorer ids)."""
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=16)
    shapes = jg.seg.labels_to_shapes(sdata["true_cells"])
    sdata["sopa_cells"] = shapes.set_axis(np.arange(len(shapes)))
    sopa.aggregate(
        sdata,
        aggregate_channels=False,
        shapes_key="sopa_cells",
        points_key="transcripts",
        gene_column="feature_name",
        key_added="sopa_table",
    )
    assert not sdata["sopa_table"].layers  # counts in X only
    return sdata


def test_gene_scores_and_pseudolabels(sopa_segmented):
    jg.tl.gene_scores(sopa_segmented, table_key="sopa_table")
    var = sopa_segmented["sopa_table"].var
    assert var.sort_values("jg_entropy_rank").index[0].startswith("T")
    jg.tl.pseudolabels(
        sopa_segmented, table_key="sopa_table", markers=MARKERS, fallback_markers=None, min_votes=1, min_counts=1
    )
    assert sopa_segmented["sopa_table"].obs["cell_type"].isin(["A", "B", "C", "Unknown"]).all()


def test_the_report_counts_the_slides_transcripts(sopa_segmented):
    row = jg.metrics.segmentation_report(
        sopa_segmented,
        pairs=[("T0_0", "T1_0")],
        labels_key=None,
        shapes_key="sopa_cells",
        table_key="sopa_table",
        points_key="transcripts",
    )
    n_total = len(sopa_segmented["transcripts"])
    in_cells = int(sopa_segmented["sopa_table"].X.sum())
    assert row["n_cells"] == 16 and row["fraction_assigned"] == pytest.approx(in_cells / n_total)
    assert 0 < row["median_convexity"] <= 1


def test_refine_and_explorer_export(sopa_segmented, tmp_path):
    out = jg.seg.refine(
        sopa_segmented, shapes_key="sopa_cells", nuclei_key="true_nuclei", points_key="transcripts", copy=True
    )
    assert out["refined_table"].n_obs >= 15
    path = jg.io.write_xenium_explorer(sopa_segmented, tmp_path / "xe", table_key="sopa_table", nuclei_key=None)
    assert (path / "cells.zarr.zip").exists()
