import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from shapely.geometry import Polygon
from zarr.storage import ZipStore

import jointseg as jg

sopa_explorer = pytest.importorskip("sopa.io.explorer")


@pytest.fixture(scope="module")
def clustered():
    sdata = jg.datasets.xenium_breast(subset="small")
    jg.pp.nuclei(sdata)
    jg.seg.expand_nuclei(sdata, max_distance_um=5)
    table = sdata["table"]
    table.obs["leiden"] = pd.Categorical(np.where(table.obs["n_transcripts"] > 100, "rich", "poor"))
    table.obs["cell_type"] = pd.Categorical(np.where(table.obs["area_um2"] > 60, "big", "small"))
    return sdata


def _zip_group(path):
    return zarr.open_group(ZipStore(path, mode="r"), mode="r")


def test_round_trip(tmp_path, clustered):
    table = clustered["table"]
    out = jg.io.write_xenium_explorer(clustered, tmp_path / "explorer")

    meta = json.loads((out / "experiment.xenium").read_text())
    assert meta["num_cells"] == table.n_obs
    assert meta["pixel_size"] == pytest.approx(0.2125)

    cells = _zip_group(out / "cells.zarr.zip")
    vertices = cells["polygon_vertices"][:]
    assert vertices.shape[:2] == (2, table.n_obs)
    ids = cells["cell_id"][:, 0]
    np.testing.assert_array_equal(ids, table.obs["cell_id"].to_numpy())
    assert sopa_explorer.str_cell_id(int(ids[0])) == "aaaaaaab-1"
    # The nucleus layer is each cell's nucleus: inside its cell, smaller than it (microns).
    for k in range(0, table.n_obs, 17):
        nucleus = Polygon(vertices[0, k].reshape(-1, 2))
        cell = Polygon(vertices[1, k].reshape(-1, 2))
        assert nucleus.area < cell.area
        assert cell.buffer(1.0).contains(nucleus.centroid)
    assert cells["cell_summary"][:, 2].sum() > 0

    matrix = _zip_group(out / "cell_feature_matrix.zarr.zip")["cell_features"]
    assert matrix.attrs["number_cells"] == table.n_obs
    assert matrix.attrs["feature_keys"][:-1] == list(table.var_names)
    assert matrix.attrs["feature_keys"][-1] == "Total transcripts"
    n_genes = table.n_vars
    data, indices = matrix["data"][:], matrix["indices"][:]
    indptr = matrix["indptr"][:]
    assert data[: indptr[n_genes]].sum() == table.layers["counts"].sum()

    groups = _zip_group(out / "analysis.zarr.zip")["cell_groups"]
    assert sorted(groups.attrs["grouping_names"]) == ["cell_type", "leiden"]
    for i, name in enumerate(groups.attrs["grouping_names"]):
        assert groups.attrs["group_names"][i] == list(table.obs[name].cat.categories)
        members = np.sort(groups[str(i)]["indices"][:])
        np.testing.assert_array_equal(members, np.arange(table.n_obs))
    assert "region" not in groups.attrs["grouping_names"]

    transcripts = _zip_group(out / "transcripts.zarr.zip")
    points = clustered["transcripts"]
    assert transcripts.attrs["number_rnas"] == len(points)
    assert set(transcripts.attrs["gene_names"]) == set(points["feature_name"].cat.categories.astype(str))

    with tifffile.TiffFile(out / "morphology.ome.tif") as tif:
        levels = tif.series[0].levels
        assert len(levels) == 6
        assert levels[0].shape[-2:] == clustered["morphology"].shape[-2:]
    assert indices[: indptr[n_genes]].max() < table.n_obs


def test_refuses_existing_directory_and_updates_with_mode(tmp_path, clustered):
    out = tmp_path / "explorer"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        jg.io.write_xenium_explorer(clustered, out)
    assert (out / "notes.txt").read_text() == "mine"
    jg.io.write_xenium_explorer(clustered, out, mode="-it", nuclei_key=None, overwrite=True)
    assert not (out / "morphology.ome.tif").exists()
    assert not (out / "transcripts.zarr.zip").exists()
    vertices = _zip_group(out / "cells.zarr.zip")["polygon_vertices"][:]
    np.testing.assert_array_equal(vertices[0], vertices[1])
    assert (out / "analysis.zarr.zip").exists()


def test_clear_errors(tmp_path, clustered):
    table = clustered["table"]
    with pytest.raises(KeyError, match="nucleus_id"):
        saved = table.obs.pop("nucleus_id")
        try:
            jg.io.write_xenium_explorer(clustered, tmp_path / "a")
        finally:
            table.obs["nucleus_id"] = saved
    with pytest.raises(KeyError, match="shapes_key"):
        saved = table.uns["jointseg"].pop("cell_labels")
        try:
            jg.io.write_xenium_explorer(clustered, tmp_path / "b")
        finally:
            table.uns["jointseg"]["cell_labels"] = saved
