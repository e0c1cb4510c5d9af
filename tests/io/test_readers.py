"""Outputs of spatialdata-io's readers feed ``jointseg segment`` unchanged.

No vendor sample can be fetched offline, so each test writes the real Xenium crop (600 x 600 px)
in one vendor's on-disk layout, reads it back with spatialdata-io's reader, writes that to zarr
and segments it with the command line. The cells must be exactly those of the same crop given
to jointseg directly: units, multiscale images, 3D points, channel choice and per-FOV coordinate
systems are all handled on the way.
"""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from zarr.storage import ZipStore

import jointseg as jg
from jointseg.cli import main

spatialdata_io = pytest.importorskip("spatialdata_io")

PX = 0.2125


@pytest.fixture(scope="module")
def crop():
    sdata = jg.datasets.xenium_breast(subset="small")
    image = np.asarray(sdata["morphology"].values[0])
    points = sdata["transcripts"].compute()
    return sdata, image, points


@pytest.fixture(scope="module")
def reference(crop, tmp_path_factory):
    """Cells of the crop segmented straight from jointseg's own dataset (microns, single scale)."""
    root = tmp_path_factory.mktemp("reference")
    jg.io.write_zarr(crop[0], root / "in.zarr")
    assert main(["segment", str(root / "in.zarr"), str(root / "out.zarr")]) == 0
    return jg.io.read_zarr(root / "out.zarr")


def _segment(sdata, root, *args):
    jg.io.write_zarr(sdata, root / "in.zarr")
    assert main(["segment", str(root / "in.zarr"), str(root / "out.zarr"), *args]) == 0
    return jg.io.read_zarr(root / "out.zarr")


def _assert_same_cells(result, reference, points_key, table_key="table"):
    np.testing.assert_array_equal(result["cell_labels"].values, reference["cell_labels"].values)
    table, expected = result[table_key], reference["table"]
    assert table.n_obs == expected.n_obs
    np.testing.assert_allclose(table.obs["area_um2"], expected.obs["area_um2"], rtol=1e-9)
    assert table.X.sum() == expected.X.sum()
    assigned = (result[points_key]["jg_cell_id"].compute() > 0).sum()
    assert assigned == (reference["transcripts"]["jg_cell_id"].compute() > 0).sum()


def test_xenium(crop, reference, tmp_path):
    _, image, points = crop
    raw = tmp_path / "xenium"
    (raw / "morphology_focus").mkdir(parents=True)
    (raw / "experiment.xenium").write_text(
        json.dumps({"pixel_size": PX, "analysis_sw_version": "xenium-2.0.0.10", "region_name": "crop"})
    )
    with ZipStore(raw / "cells.zarr.zip", mode="w") as store:
        zarr.group(store=store, zarr_format=2).create_array("cell_id", data=np.zeros((1, 2), np.uint32))
    pd.DataFrame(
        {
            "transcript_id": points["transcript_id"].to_numpy(),
            "cell_id": np.where(points["xenium_cell_id"] > 0, "aaaabbbb-1", "UNASSIGNED"),
            "overlaps_nucleus": points["overlaps_nucleus"].to_numpy(),
            "feature_name": points["feature_name"].astype(str).to_numpy(),
            "x_location": points["x"].to_numpy(),
            "y_location": points["y"].to_numpy(),
            "z_location": points["z"].to_numpy(),
            "qv": points["qv"].to_numpy(),
        }
    ).to_parquet(raw / "transcripts.parquet")
    tifffile.imwrite(raw / "morphology_focus" / "morphology_focus_0000.ome.tif", image, ome=True)

    sdata = spatialdata_io.xenium(
        raw, cells_boundaries=False, nucleus_boundaries=False, cells_labels=False, nucleus_labels=False,
        cells_table=False, morphology_mip=False, aligned_images=False,
    )  # fmt: skip
    assert set(sdata["morphology_focus"].keys()) >= {"scale0", "scale1"}  # a multiscale image
    assert "z" in sdata["transcripts"].columns  # 3D points: z is ignored
    assert jg.pp.microns_per_unit(sdata) == pytest.approx(PX)  # "global" is in pixels here

    result = _segment(sdata, tmp_path, "--image-key", "morphology_focus", "--points-key", "transcripts")
    _assert_same_cells(result, reference, "transcripts")
    kept = result["transcripts"][["cell_id", "jg_cell_id"]].compute()
    assert (kept["cell_id"].astype(str) != "UNASSIGNED").sum() == (points["xenium_cell_id"] > 0).sum()


def test_merscope(crop, reference, tmp_path):
    _, image, points = crop
    raw = tmp_path / "202611_run" / "region_0"
    (raw / "images").mkdir(parents=True)
    np.savetxt(raw / "images" / "micron_to_mosaic_pixel_transform.csv", np.diag([1 / PX, 1 / PX, 1.0]))
    poly_t = (image.max() - image).astype(image.dtype)  # a second stain: DAPI is chosen by name
    tifffile.imwrite(raw / "images" / "mosaic_PolyT_z3.tif", poly_t)
    tifffile.imwrite(raw / "images" / "mosaic_DAPI_z3.tif", image)
    pd.DataFrame(
        {
            "barcode_id": points["feature_name"].cat.codes.to_numpy(),
            "global_x": points["x"].to_numpy(),
            "global_y": points["y"].to_numpy(),
            "global_z": np.round(points["z"].to_numpy() / 1.5),
            "x": points["x"].to_numpy() / PX,
            "y": points["y"].to_numpy() / PX,
            "fov": 0,
            "gene": points["feature_name"].astype(str).to_numpy(),
            "transcript_id": points["transcript_id"].astype(str).to_numpy(),
            "cell_id": points["xenium_cell_id"].to_numpy(),
        }
    ).to_csv(raw / "detected_transcripts.csv")

    sdata = spatialdata_io.merscope(raw, cells_boundaries=False, cells_table=False, backend="dask_image")
    image_key, points_key = "202611_run_region_0_z3", "202611_run_region_0_transcripts"
    assert sorted(str(c) for c in sdata[image_key]["scale0"]["image"].coords["c"].values) == ["DAPI", "PolyT"]
    assert jg.pp.microns_per_unit(sdata) == pytest.approx(PX)

    args = ["--image-key", image_key, "--points-key", points_key, "--channel", "PolyT"]
    wrong = _segment(sdata, tmp_path / "wrong", *args)
    assert not np.array_equal(wrong["cell_labels"].values, reference["cell_labels"].values)
    args[-1] = "DAPI"
    result = _segment(sdata, tmp_path / "right", *args)
    _assert_same_cells(result, reference, points_key)
    assert (result[points_key]["cell_id"].compute() == points["xenium_cell_id"].to_numpy()).all()


def test_cosmx(crop, reference, tmp_path):
    _, image, points = crop
    raw = tmp_path / "cosmx"
    (raw / "CellComposite").mkdir(parents=True)
    (raw / "CellLabels").mkdir()
    offset = (5000.0, 7000.0)  # the FOV's position on the slide, in pixels
    # CosMx local y runs upwards: the reader flips the image, so the file holds it upside down.
    composite = np.stack([np.zeros_like(image), np.zeros_like(image), image], axis=-1)
    tifffile.imwrite(raw / "CellComposite" / "CellComposite_F001.tif", composite[::-1])
    tifffile.imwrite(raw / "CellLabels" / "CellLabels_F001.tif", np.zeros(image.shape, np.uint32))
    cells = pd.DataFrame({"fov": 1, "cell_ID": [1, 2, 3], "CenterX_local_px": [10.0, 500.0, 300.0]})
    cells["CenterY_local_px"] = [20.0, 40.0, 550.0]
    cells["CenterX_global_px"] = cells["CenterX_local_px"] + offset[0]
    cells["CenterY_global_px"] = cells["CenterY_local_px"] + offset[1]
    cells.to_csv(raw / "crop_metadata_file.csv", index=False)
    pd.DataFrame({"fov": 1, "cell_ID": [1, 2, 3], "GENE_A": [1, 0, 2]}).to_csv(
        raw / "crop_exprMat_file.csv", index=False
    )
    pd.DataFrame({"fov": [1], "x_global_px": [offset[0]], "y_global_px": [offset[1]]}).to_csv(
        raw / "crop_fov_positions_file.csv", index=False
    )
    x_px, y_px = points["x"].to_numpy() / PX, points["y"].to_numpy() / PX
    pd.DataFrame(
        {
            "fov": 1,
            "cell_ID": 0,
            "x_global_px": x_px + offset[0],
            "y_global_px": y_px + offset[1],
            "x_local_px": x_px,
            "y_local_px": y_px,
            "z": points["z"].to_numpy(),
            "target": points["feature_name"].astype(str).to_numpy(),
            "CellComp": "None",
        }
    ).to_csv(raw / "crop_tx_file.csv", index=False)

    sdata = spatialdata_io.cosmx(raw)
    assert {"1_image", "1_points"} <= set(sdata.images) | set(sdata.points)
    with pytest.raises(ValueError, match="set_units"):
        jg.pp.microns_per_unit(sdata)
    jg.io.write_zarr(sdata, tmp_path / "in.zarr")
    code = main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "x.zarr"), "--image-key", "1_image"])
    assert code == 2  # no pixel size: a clear error, nothing written
    assert not (tmp_path / "x.zarr").exists()

    args = ["--image-key", "1_image", "--points-key", "1_points", "--channel", "2", "--coordinate-system", "1"]
    args += ["--microns-per-unit", str(PX)]
    assert main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "y.zarr"), *args]) == 2  # "table" exists
    result = _segment(sdata, tmp_path / "fov", *args, "--table-key", "jg_table")
    _assert_same_cells(result, reference, "1_points", table_key="jg_table")
    assert result["table"].n_obs == 3  # the vendor's table is kept
