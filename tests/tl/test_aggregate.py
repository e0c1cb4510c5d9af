import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from spatialdata.models import PointsModel, get_table_keys

import jointseg as jg


def test_counts_match_brute_force(synth):
    jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts", nuclei_key="true_nuclei")
    table = synth["table"]
    df = synth["transcripts"].compute()
    # brute force: each transcript's nearest pixel, looked up in the label image
    cells = synth["true_cells"].values
    ids = cells[np.rint(df["y"] / 0.2125).astype(int), np.rint(df["x"] / 0.2125).astype(int)]
    ref = pd.crosstab(ids[ids > 0], df["feature_name"].astype(str).to_numpy()[ids > 0])
    ref = ref.reindex(index=table.obs["cell_id"].to_numpy(), columns=table.var_names, fill_value=0)
    np.testing.assert_array_equal(table.X.toarray(), ref.to_numpy())
    assert table.X.sum() == (ids > 0).sum()
    np.testing.assert_array_equal(df["jg_cell_id"].to_numpy(), ids)
    np.testing.assert_array_equal(table.obs["nucleus_id"], table.obs["cell_id"])


def test_table_model_conventions(synth):
    jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts")
    table = synth["table"]
    assert get_table_keys(table) == ("true_cells", "region", "cell_id")
    assert isinstance(table.obs["region"].dtype, pd.CategoricalDtype)
    assert table.X.dtype == np.int32 and table.layers["counts"].nnz == table.X.nnz
    ids = table.obs["cell_id"].to_numpy()
    assert (np.diff(ids) > 0).all() and list(table.obs_names) == [str(i) for i in ids]
    areas = np.bincount(synth["true_cells"].values.ravel())[ids]
    np.testing.assert_array_equal(table.obs["area"], areas)
    _, xx = np.indices(synth["true_cells"].shape)
    lab = synth["true_cells"].values
    cx = np.bincount(lab.ravel(), xx.ravel())[ids] / areas * 0.2125
    np.testing.assert_allclose(table.obsm["spatial"][:, 0], cx)


def test_existing_cell_id_column_is_protected(synth):
    df = synth["transcripts"].compute()
    df["cell_id"] = 7  # a vendor's own cell ids (Xenium, MERSCOPE) are kept
    df["jg_cell_id"] = 5
    synth["transcripts"] = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, feature_key="feature_name")
    with pytest.raises(ValueError, match="already have a 'jg_cell_id' column"):
        jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts")
    jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts", points_cell_id_key="mine")
    out = synth["transcripts"].compute()
    assert (out["cell_id"] == 7).all() and (out["jg_cell_id"] == 5).all() and out["mine"].max() > 0


def test_control_genes_excluded_and_nan_dropped(synth, caplog):
    df = synth["transcripts"].compute()
    extra = df.iloc[:10].copy()
    extra["feature_name"] = "NegControlProbe_00001"
    nan = df.iloc[:3].copy()
    nan["x"] = np.nan
    df = pd.concat(
        [df.astype({"feature_name": str}), extra.astype({"feature_name": str}), nan.astype({"feature_name": str})]
    )
    df["feature_name"] = df["feature_name"].astype("category")
    synth["transcripts"] = PointsModel.parse(
        dd.from_pandas(df.reset_index(drop=True), npartitions=3),
        coordinates={"x": "x", "y": "y"},
        feature_key="feature_name",
    )
    with caplog.at_level("WARNING", logger="jointseg"):
        jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts")
    assert "Dropped 3 transcripts with NaN" in caplog.text
    table = synth["table"]
    assert "NegControlProbe_00001" not in table.var_names
    assert table.uns["jointseg"]["table"]["n_transcripts_nan_dropped"] == 3
    ids = synth["transcripts"].compute()["jg_cell_id"]
    assert len(ids) == len(df) and (ids.iloc[-3:] == 0).all()


def test_empty_points_raise(synth):
    df = synth["transcripts"].compute().iloc[:0]
    synth["transcripts"] = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, feature_key="feature_name")
    with pytest.raises(ValueError, match="empty"):
        jg.tl.aggregate(synth, labels_key="true_cells", points_key="transcripts")
