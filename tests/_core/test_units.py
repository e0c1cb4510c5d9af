import numpy as np
import pytest
from spatialdata.transformations import Scale, set_transformation

import jointseg as jg
from jointseg._core.utils import pixel_size_um


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
