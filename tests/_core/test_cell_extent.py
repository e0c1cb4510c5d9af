import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from spatialdata.models import Labels2DModel, PointsModel
from spatialdata.transformations import get_transformation

import jointseg as jg
from jointseg._core.cell_extent import estimate_cell_extent
from jointseg._core.method_run import start_run

PX = 0.2125


def _slide(extent_um, *, seed=0, shape=(1024, 1024), **kw):
    """Cells reaching ``extent_um`` (+-10%) beyond their nuclei, spaced so they rarely touch."""
    d = extent_um / PX
    return jg.datasets.synthetic(
        shape=shape, n_cells=200, seed=seed, cell_expansion_px=(0.9 * d, 1.1 * d),
        min_centre_distance_px=1.6 * (1.1 * d + 12), background_transcripts=2000, **kw,
    )  # fmt: skip


def _extent(sdata, nuclei_key="true_nuclei", **kw):
    run = start_run(sdata, method="test", image_key=None, points_key=None, nuclei_key=nuclei_key, outputs=None,
                    grid_key=nuclei_key)  # fmt: skip
    return estimate_cell_extent(run.nuclei(), run.index, pixel_size_um=run.pixel_size_um, **kw)


@pytest.mark.parametrize("extent_um", [3.0, 8.0, 15.0])
def test_known_extents_are_recovered(extent_um):
    extent = _extent(_slide(extent_um))
    assert extent.global_um == pytest.approx(extent_um, rel=0.25)
    assert np.nanmedian(extent.per_nucleus_um[1:]) == pytest.approx(extent_um, rel=0.25)
    assert np.isnan(extent.per_nucleus_um[0])


def test_local_extents_follow_the_cells():
    """Small cells on the left half of a slide, large ones on the right: each nucleus gets its own."""
    small, large = _slide(3.0, seed=1), _slide(12.0, seed=2)
    left, right = small["true_nuclei"].values, large["true_nuclei"].values
    nuclei = np.where(np.arange(left.shape[1]) < 512, left, np.where(right > 0, right + left.max(), 0))
    nuclei[:, 480:544] = 0  # no nucleus cut by the seam
    small["true_nuclei"] = Labels2DModel.parse(nuclei, dims=("y", "x"), transformations=get_transformation(
        small["true_nuclei"], get_all=True))  # fmt: skip
    left_points, right_points = small["transcripts"].compute(), large["transcripts"].compute()
    seam_um = 512 * PX
    points = pd.concat([left_points[left_points["x"] < seam_um], right_points[right_points["x"] >= seam_um]],
                       ignore_index=True)  # fmt: skip
    small["transcripts"] = PointsModel.parse(points, coordinates={"x": "x", "y": "y", "z": "z"},
                                             feature_key="feature_name")  # fmt: skip
    extent = _extent(small)
    ids = np.unique(nuclei[nuclei > 0])
    centre_x = np.asarray(ndi.center_of_mass(nuclei > 0, nuclei, ids))[:, 1]
    per = extent.per_nucleus_um[ids]
    assert np.median(per[centre_x < 480]) == pytest.approx(3.0, rel=0.25)
    assert np.median(per[centre_x > 544]) == pytest.approx(12.0, rel=0.25)


def test_blocks_do_not_change_the_estimate():
    sdata = _slide(8.0, shape=(700, 700))
    whole, tiled = _extent(sdata, block_size=4096), _extent(sdata, block_size=128)
    assert whole.global_um == tiled.global_um
    np.testing.assert_allclose(whole.per_nucleus_um, tiled.per_nucleus_um)


def test_no_nuclei_gives_nan():
    sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=3)
    run = start_run(sdata, method="test", image_key=None, points_key=None, nuclei_key="true_nuclei", outputs=None)
    extent = estimate_cell_extent(np.zeros((128, 128), np.int32), run.index, pixel_size_um=PX)
    assert np.isnan(extent.global_um) and extent.per_nucleus_um.shape == (1,)


def test_nearest_nucleus_and_distance_bins_match_scipys_distances():
    from jointseg._core.cell_extent import _nearest_and_bin

    rng = np.random.default_rng(0)
    nuclei = np.zeros((90, 70), np.int32)
    for i in range(12):
        y, x = rng.integers(0, 85, 1)[0], rng.integers(0, 65, 1)[0]
        nuclei[y : y + 5, x : x + 4] = i + 1
    distance, (iy, ix) = ndi.distance_transform_edt(nuclei == 0, return_indices=True)
    feature = ndi.distance_transform_edt(nuclei == 0, return_distances=False, return_indices=True)
    nearest, dbin = _nearest_and_bin(nuclei, feature, 10, 80, 5, 60, 2.35)
    window = np.s_[10:80, 5:60]
    np.testing.assert_array_equal(nearest, nuclei[iy, ix][window])
    expected = np.where(distance > 0, np.floor((distance - 1) / 2.35), -1)[window]
    np.testing.assert_array_equal(dbin, expected)
