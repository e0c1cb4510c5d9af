import numpy as np
import pandas as pd
import pytest
from spatialdata.transformations import Scale, get_transformation

import jointseg as jg
from jointseg.datasets import _fetch


def test_small_crop_has_xenium_layout():
    sdata = jg.datasets.xenium_breast(subset="small")
    image = sdata["morphology"]
    assert image.dims == ("c", "y", "x")
    assert image.shape == (1, 600, 600)
    assert image.dtype == np.uint16
    t = get_transformation(image, to_coordinate_system="global")
    assert isinstance(t, Scale)
    np.testing.assert_allclose(t.scale, [0.2125, 0.2125])
    points = sdata["transcripts"]
    assert points.attrs["spatialdata_attrs"]["feature_key"] == "feature_name"
    df = points.compute()
    assert isinstance(df["feature_name"].dtype, pd.CategoricalDtype)
    assert {"x", "y", "z", "xenium_cell_id"} <= set(df.columns)
    assert "cell_id" not in df.columns  # the vendor segmentation is never passed off as an input
    # all transcripts lie on the image (microns -> pixels through the Scale)
    assert df["x"].between(-0.5 * 0.2125, 599.5 * 0.2125).all()
    assert len(df) == 25205


def test_unknown_subset():
    with pytest.raises(ValueError, match="subset"):
        jg.datasets.xenium_breast(subset="huge")


def test_bad_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTSEG_DATA_DIR", str(tmp_path))
    (tmp_path / _fetch.WHEEL_NAME).write_bytes(b"not the wheel")
    with pytest.raises(RuntimeError, match="Checksum mismatch"):
        _fetch.demo_wheel()
    assert not (tmp_path / _fetch.WHEEL_NAME).exists()


def test_markers_breast():
    m = jg.datasets.markers("breast")
    assert set(m.columns) == {"cell_type", "gene", "kind"}
    assert m["cell_type"].nunique() == 15
    pos = m[(m["kind"] == "positive") & (m["cell_type"] == "Epithelial")]["gene"]
    assert "EPCAM" in set(pos) or "KRT7" in set(pos) or len(pos) > 0
    with pytest.raises(KeyError, match="available"):
        jg.datasets.markers("liver")


@pytest.mark.slow
def test_full_crop():
    sdata = jg.datasets.xenium_breast(subset="full")
    assert sdata["morphology"].shape == (1, 1800, 2400)
    df = sdata["transcripts"].compute()
    assert len(df) == 186146
    assert df["feature_name"].nunique() == 313
