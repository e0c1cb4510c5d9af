"""A jointseg table annotates its labels or its polygons, and the ecosystem's tools read either."""

import matplotlib
import numpy as np
import pytest
import spatialdata

import jointseg as jg

pytestmark = pytest.mark.smoke  # also run on Python 3.12 with the newest spatialdata (make test-py312)

matplotlib.use("Agg")


@pytest.fixture
def segmented():
    sdata = jg.datasets.synthetic(shape=(192, 192), n_cells=8)
    jg.seg.expand_nuclei(sdata, nuclei_key="true_nuclei")
    return sdata


def test_the_table_can_annotate_the_polygons_and_go_back(segmented):
    jg.io.annotate_table(segmented, "cell_boundaries")
    table = segmented["table"]
    assert table.uns["spatialdata_attrs"]["region"] == "cell_boundaries"
    assert (table.obs["region"] == "cell_boundaries").all()
    values = spatialdata.get_values(
        "n_transcripts", element_name="cell_boundaries", sdata=segmented, table_name="table"
    )
    np.testing.assert_array_equal(values["n_transcripts"].to_numpy(), table.obs["n_transcripts"].to_numpy())
    jg.io.annotate_table(segmented, "cell_labels")
    assert table.uns["spatialdata_attrs"]["region"] == "cell_labels"


def test_spatialdata_plot_colours_polygons_by_a_table_column(segmented):
    pytest.importorskip("spatialdata_plot")
    jg.io.annotate_table(segmented, "cell_boundaries")
    gene = segmented["table"].var_names[0]
    ax = segmented.pl.render_shapes("cell_boundaries", color=gene, table_name="table").pl.show(return_ax=True)
    assert len(ax.collections) >= 1


def test_sopa_writes_explorer_and_aggregates_from_the_polygons(segmented, tmp_path):
    sopa = pytest.importorskip("sopa")
    jg.io.annotate_table(segmented, "cell_boundaries")
    sopa.io.explorer.write(
        str(tmp_path / "xe"),
        segmented,
        shapes_key="cell_boundaries",
        table_key="table",
        image_key="morphology",
        points_key="transcripts",
        gene_column="feature_name",
        save_h5ad=False,
        mode="-it",
    )
    assert (tmp_path / "xe" / "experiment.xenium").exists() and (tmp_path / "xe" / "cells.zarr.zip").exists()
    # jointseg's own writer finds the polygons through the table either way
    jg.io.write_xenium_explorer(segmented, tmp_path / "jg", nuclei_key=None)
    sopa.aggregate(
        segmented,
        aggregate_channels=False,
        shapes_key="cell_boundaries",
        points_key="transcripts",
        gene_column="feature_name",
        key_added="sopa_table",
    )
    ours = np.asarray(segmented["table"].X.sum(axis=1)).ravel()
    theirs = np.asarray(segmented["sopa_table"].X.sum(axis=1)).ravel()
    # sopa counts points in the polygons, jointseg by pixel: the same cells, near-equal counts
    assert len(theirs) == len(ours) and np.abs(theirs.sum() / ours.sum() - 1) < 0.05


def test_refuses_an_unknown_element_and_polygons_missing_cells(segmented):
    with pytest.raises(KeyError, match="No labels or shapes"):
        jg.io.annotate_table(segmented, "nope")
    segmented["few"] = segmented["cell_boundaries"].iloc[:3]
    with pytest.raises(KeyError, match="have no polygon"):
        jg.io.annotate_table(segmented, "few")
    assert segmented["table"].uns["spatialdata_attrs"]["region"] == "cell_labels"  # unchanged


def test_a_backed_table_is_rewritten_in_the_store(segmented, tmp_path):
    path = tmp_path / "s.zarr"
    segmented.write(path)
    backed = spatialdata.read_zarr(path)
    jg.io.annotate_table(backed, "cell_boundaries")
    assert spatialdata.read_zarr(path)["table"].uns["spatialdata_attrs"]["region"] == "cell_boundaries"
