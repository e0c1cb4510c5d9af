import numpy as np
import shapely
from spatialdata import to_polygons

import jointseg as jg
from jointseg._core.shapes import labels_to_shapes


def test_polygons_equal_spatialdata_contours_with_fewer_vertices():
    labels = jg.datasets.synthetic(shape=(256, 256), n_cells=15)["true_cells"]
    shapes = labels_to_shapes(labels)
    reference = to_polygons(labels)
    ref_ids = reference["label"].to_numpy() if "label" in reference.columns else reference.index.to_numpy()
    reference = reference.set_axis(ref_ids.astype(int)).sort_index()
    assert list(shapes.index) == list(reference.index) and shapes.index.dtype == labels.dtype
    assert shapely.equals(shapes.geometry.to_numpy(), reference.geometry.to_numpy()).all()
    n_ours = shapely.get_num_coordinates(shapes.geometry.to_numpy()).sum()
    n_ref = shapely.get_num_coordinates(reference.geometry.to_numpy()).sum()
    assert n_ours < 0.6 * n_ref
    # pixel-centre contours: each polygon's area is its pixel count less half a pixel per border pixel
    values = labels.values
    areas = np.bincount(values.ravel())[1:]
    assert np.all(shapes.geometry.area.to_numpy() <= areas[np.flatnonzero(areas)])
    assert np.all(shapes.geometry.area.to_numpy() > 0.7 * areas[np.flatnonzero(areas)])


def test_cells_cut_by_chunk_rows_are_joined_into_spatialdatas_polygons():
    # chunks of 24 rows: every cell spans bands, which are vectorised one by one and joined
    labels = jg.datasets.synthetic(shape=(256, 256), n_cells=15)["true_cells"].chunk({"y": 24, "x": 100})
    banded = labels_to_shapes(labels)
    reference = to_polygons(labels)  # all chunks at once
    ref_ids = reference["label"].to_numpy() if "label" in reference.columns else reference.index.to_numpy()
    reference = reference.set_axis(ref_ids.astype(int)).sort_index()
    assert list(banded.index) == list(reference.index)
    assert shapely.equals(banded.geometry.to_numpy(), reference.geometry.to_numpy()).all()
    n_banded = shapely.get_num_coordinates(banded.geometry.to_numpy()).sum()
    assert n_banded < 0.6 * shapely.get_num_coordinates(reference.geometry.to_numpy()).sum()
