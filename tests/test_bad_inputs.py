"""Bad input never corrupts or silently misleads: one test per row of docs/robustness.md.

Each case gives a clear error (and leaves the SpatialData as it was) or a documented, logged
behaviour. The pipeline under test is the one every method shares: nuclei, then cells
(``expand_nuclei``), then the table and the per-transcript cell ids.
"""

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from spatialdata.models import Image2DModel, Labels2DModel, PointsModel
from spatialdata.transformations import Identity, Scale, get_transformation

import jointseg as jg

PX = 0.2125


def _points(sdata, frame, **kw):
    transformations = get_transformation(sdata["transcripts"], get_all=True)
    coordinates = {"x": "x", "y": "y", **({"z": "z"} if "z" in frame else {})}
    return PointsModel.parse(
        frame, coordinates=coordinates, feature_key="feature_name", transformations=kw.get("tf", transformations)
    )


def _run(sdata, **kw):
    jg.pp.nuclei(sdata, image_key="morphology", overwrite=True, **kw)
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", overwrite=True)
    return sdata["table"]


@pytest.fixture
def sdata():
    return jg.datasets.synthetic(shape=(256, 256), n_cells=25, seed=3)


def _with_image(sdata, array, **kw):
    sdata["morphology"] = Image2DModel.parse(
        array, dims=("c", "y", "x"), transformations={"global": Scale([PX, PX], axes=("y", "x"))}, **kw
    )


def test_empty_image_region(sdata):
    image = sdata["morphology"].values.copy()
    image[:, :, :128] = 0
    _with_image(sdata, image)
    table = _run(sdata)
    assert table.n_obs > 0
    centres_x = table.obsm["spatial"][:, 0] / PX
    assert (centres_x > 118).all()  # no cell invented in the blank half (halo of the expansion aside)


def test_zero_transcripts_in_a_block(sdata):
    frame = sdata["transcripts"].compute()
    frame = frame[frame["x"] / PX >= 128]
    sdata["transcripts"] = _points(sdata, frame)
    table = _run(sdata)
    left = table.obsm["spatial"][:, 0] / PX < 100
    assert left.any() and (table.obs["n_transcripts"][left] == 0).all()  # nuclei there are kept, empty


def test_control_genes_excluded_by_documented_pattern(sdata):
    frame = sdata["transcripts"].compute()
    extra = frame.iloc[:40].copy()
    extra["feature_name"] = ["NegControlProbe_1", "BLANK_0001", "UnassignedCodeword_3", "DeprecatedCodeword_7"] * 10
    frame = pd.concat([frame, extra], ignore_index=True)
    frame["feature_name"] = frame["feature_name"].astype("category")
    sdata["transcripts"] = _points(sdata, frame)
    table = _run(sdata)
    assert not table.var_names.str.match(jg._core.constants.CONTROL_GENE_PATTERN).any()
    assert "T0_0" in table.var_names


def test_duplicated_transcripts_are_counted_and_logged(sdata, caplog):
    base = _run(sdata).X.sum()
    frame = sdata["transcripts"].compute().drop(columns="jg_cell_id")
    frame = pd.concat([frame, frame.iloc[:100]], ignore_index=True)
    sdata["transcripts"] = _points(sdata, frame)
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        table = _run(sdata)
    assert "100 transcripts of 'transcripts' repeat another one exactly" in caplog.text
    assert table.X.sum() >= base  # counted as given, never silently dropped


def test_nan_and_inf_coordinates_dropped_with_a_count(sdata, caplog):
    frame = sdata["transcripts"].compute()
    frame.loc[frame.index[:7], "x"] = np.nan
    frame.loc[frame.index[7:10], "y"] = np.inf
    sdata["transcripts"] = _points(sdata, frame)
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        table = _run(sdata)
    assert "Dropped 10 transcripts with NaN/inf coordinates" in caplog.text
    assert table.uns["jointseg"]["table"]["n_transcripts_nan_dropped"] == 10
    assert (sdata["transcripts"]["jg_cell_id"].compute().iloc[:10] == 0).all()


def test_points_outside_the_image_ignored_and_reported(sdata, caplog):
    frame = sdata["transcripts"].compute()
    outside = frame.iloc[:25].copy()
    outside["x"] += 1000.0
    sdata["transcripts"] = _points(sdata, pd.concat([frame, outside], ignore_index=True))
    with caplog.at_level(logging.INFO, logger="jointseg"):
        table = _run(sdata)
    assert "25 transcripts fall outside image" in caplog.text
    info = table.uns["jointseg"]["table"]
    assert info["n_transcripts_total"] - info["n_transcripts_in_image"] == 25


def test_mismatched_coordinate_systems_raise_before_writing(sdata):
    frame = sdata["transcripts"].compute()
    sdata["transcripts"] = _points(sdata, frame, tf={"slide": Identity()})
    jg.pp.nuclei(sdata, image_key="morphology")
    with pytest.raises(ValueError, match="no transformation to coordinate system 'global'"):
        jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
    assert "cell_labels" not in sdata and "table" not in sdata


def test_non_integer_labels_refused(sdata):
    sdata["float_cells"] = Labels2DModel.parse(
        sdata["true_cells"].values.astype(np.float32), dims=("y", "x"),
        transformations=get_transformation(sdata["true_cells"], get_all=True),
    )  # fmt: skip
    with pytest.raises(TypeError, match="integer dtype"):
        jg.tl.aggregate(sdata, labels_key="float_cells", points_key="transcripts")
    assert "table" not in sdata


def test_3d_points_use_x_and_y(sdata):
    flat = _run(sdata)
    labels_2d = sdata["cell_labels"].values.copy()
    frame = sdata["transcripts"].compute().drop(columns="jg_cell_id")
    frame["z"] = np.random.default_rng(0).uniform(0, 10, len(frame))
    sdata["transcripts"] = _points(sdata, frame)
    deep = _run(sdata)
    np.testing.assert_array_equal(sdata["cell_labels"].values, labels_2d)
    assert deep.X.sum() == flat.X.sum()


def test_channel_chosen_by_name(sdata):
    dapi = sdata["morphology"].values[0]
    _with_image(sdata, np.stack([dapi.max() - dapi, dapi]), c_coords=["PolyT", "DAPI"])
    jg.pp.nuclei(sdata, image_key="morphology", channel="DAPI")
    by_name = sdata["nuclei"].values.copy()
    _with_image(sdata, dapi[np.newaxis], c_coords=["DAPI"])
    jg.pp.nuclei(sdata, image_key="morphology", overwrite=True)
    np.testing.assert_array_equal(by_name, sdata["nuclei"].values)
    with pytest.raises(KeyError, match=r"No channel 'DNA'.*channels: \['DAPI'\]"):
        jg.pp.nuclei(sdata, image_key="morphology", channel="DNA", overwrite=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_image_dtypes(sdata, dtype):
    stain = sdata["morphology"].values.astype(np.float64)
    reference = _run(sdata).n_obs
    scaled = stain / stain.max()
    if np.issubdtype(dtype, np.integer):
        scaled = np.round(scaled * np.iinfo(dtype).max)
    _with_image(sdata, scaled.astype(dtype))
    assert sdata["morphology"].dtype == dtype
    assert abs(_run(sdata).n_obs - reference) <= 1  # percentile normalisation: the dtype does not matter


def test_huge_cells_are_logged(sdata, caplog):
    yy, xx = np.mgrid[:256, :256]
    giant = ((yy - 128) ** 2 + (xx - 128) ** 2 < 90**2).astype(np.float32)
    _with_image(sdata, giant[np.newaxis])
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        jg.pp.nuclei(sdata, image_key="morphology", block_size=64, halo_um=4.0)
    assert "reach the edge of the block's halo and may be cut" in caplog.text


def test_existing_output_keys_are_not_overwritten(sdata):
    _run(sdata)
    before = sdata["table"]
    labels = sdata["cell_labels"].values.copy()
    with pytest.raises(ValueError, match="already exists"):
        jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", max_distance_um=1.0)
    assert sdata["table"] is before
    np.testing.assert_array_equal(sdata["cell_labels"].values, labels)


def test_empty_points_and_blank_images_raise_without_writing(sdata):
    frame = sdata["transcripts"].compute().iloc[:0]
    blank = jg.datasets.synthetic(shape=(128, 128), n_cells=2)
    blank["transcripts"] = _points(blank, frame)
    jg.pp.nuclei(blank, image_key="morphology")
    with pytest.raises(ValueError, match="empty"):
        jg.seg.expand_nuclei(blank, image_key="morphology", points_key="transcripts")
    _with_image(sdata, np.zeros((1, 256, 256), np.uint16))
    jg.pp.nuclei(sdata, image_key="morphology")
    with pytest.raises(ValueError, match="found no cells; nothing was written"):
        jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
    assert "cell_labels" not in sdata


def test_image_data_tree_is_read_at_full_resolution(sdata):
    image = sdata["morphology"]
    tree = Image2DModel.parse(
        image.data, dims=("c", "y", "x"), scale_factors=[2, 2],
        transformations=get_transformation(image, get_all=True),
    )  # fmt: skip
    assert isinstance(tree, xr.DataTree)
    labels = (_run(sdata), sdata["cell_labels"].values.copy())[1]
    sdata["morphology"] = tree
    _run(sdata)
    np.testing.assert_array_equal(sdata["cell_labels"].values, labels)
