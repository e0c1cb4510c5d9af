import logging

import numpy as np
import pytest
from spatialdata import SpatialData
from spatialdata.models import Image2DModel
from spatialdata.transformations import Scale, set_transformation

import jointseg as jg
from jointseg._core.nucleus_scale import REFERENCE_NUCLEUS_WIDTH_UM, nucleus_width_from_labels
from jointseg._core.units import pixel_size_um


def test_default_is_microns_and_set_units_persists(tmp_path):
    sdata = jg.datasets.synthetic(shape=(64, 64), n_cells=2)
    assert jg.pp.microns_per_unit(sdata) == 1.0
    jg.pp.set_units(sdata, 0.5)
    assert pixel_size_um(sdata, "morphology") == pytest.approx(0.2125 * 0.5)
    jg.io.write_zarr(sdata, tmp_path / "s.zarr")
    assert jg.pp.microns_per_unit(jg.io.read_zarr(tmp_path / "s.zarr")) == 0.5
    assert jg.pp.microns_per_unit(sdata, "other") == 1.0  # per coordinate system
    for bad in (0, -1, np.nan, np.inf):
        with pytest.raises(ValueError, match="positive finite"):
            jg.pp.set_units(sdata, bad)


def test_reader_layouts():
    sdata = jg.datasets.synthetic(shape=(64, 64), n_cells=2)
    # spatialdata-io's Xenium layout: image in pixels (identity), points in microns scaled to pixels.
    set_transformation(sdata["morphology"], Scale([1.0, 1.0], axes=("y", "x")), "global")
    set_transformation(sdata["transcripts"], Scale([1 / 0.2125, 1 / 0.2125], axes=("x", "y")), "global")
    sdata.attrs["spatialdata_io_reader"] = "xenium"
    assert jg.pp.microns_per_unit(sdata) == pytest.approx(0.2125)
    assert pixel_size_um(sdata, "morphology") == pytest.approx(0.2125)
    sdata.attrs["spatialdata_io_reader"] = "cosmx"
    with pytest.raises(ValueError, match="set_units"):
        jg.pp.microns_per_unit(sdata)
    jg.pp.set_units(sdata, 0.12028)
    assert pixel_size_um(sdata, "morphology") == pytest.approx(0.12028)


def _plain_image(image):
    """A SpatialData holding only a stain with no units: its pixels are the coordinate system."""
    return SpatialData(images={"dapi": Image2DModel.parse(image[np.newaxis], dims=("c", "y", "x"))})


def test_units_estimated_from_the_nuclei_with_one_warning(caplog):
    truth = jg.datasets.synthetic(shape=(512, 512), n_cells=60, seed=0)
    sdata = _plain_image(truth["morphology"].values[0])
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        value = jg.pp.microns_per_unit(sdata)
        assert jg.pp.microns_per_unit(sdata) == value  # recorded: estimated once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "estimated" in warnings[0] and "set_units" in warnings[0]
    # Nuclei of known width in pixels give the micron size they are taken to have.
    width_px = nucleus_width_from_labels(truth["true_nuclei"].values).width_px
    assert value * width_px == pytest.approx(REFERENCE_NUCLEUS_WIDTH_UM, rel=0.1)
    jg.pp.set_units(sdata, 0.3)  # a given pixel size always wins
    assert pixel_size_um(sdata, "dapi") == 0.3


def test_a_given_scale_is_taken_as_microns_but_implausible_nuclei_are_flagged(caplog):
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20, seed=1)
    set_transformation(sdata["morphology"], Scale([1000.0, 1000.0], axes=("y", "x")), "global")  # nanometres
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        assert jg.pp.microns_per_unit(sdata) == 1.0
    assert "taken to be in microns" in caplog.text


def test_no_element_to_measure_is_said():
    sdata = jg.datasets.synthetic(shape=(64, 64), n_cells=2)
    with pytest.raises(ValueError, match="no nuclei stand out"):
        jg.pp.microns_per_unit(_plain_image(np.zeros((64, 64), np.uint16)))
    assert jg.pp.microns_per_unit(sdata, "elsewhere") == 1.0
