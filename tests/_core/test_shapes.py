import numpy as np
import shapely
from spatialdata import to_polygons

import jointseg as jg
from jointseg._core.shapes import chunk_polygons, labels_to_shapes


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


def _reference(labels: np.ndarray) -> dict:
    """spatialdata's polygons of a label image, by id."""
    from spatialdata.models import Labels2DModel

    gdf = to_polygons(Labels2DModel.parse(labels, dims=("y", "x")))
    ids = gdf["label"].to_numpy() if "label" in gdf.columns else gdf.index.to_numpy()
    return dict(zip(ids.astype(int), gdf.geometry, strict=True))


def test_ragged_cells_touching_the_border_match_spatialdata():
    # noisy labels: ragged outlines, 1-pixel cells, diagonal-only contacts, cells on the image's edge
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 9, (12, 12)), np.ones((3, 3), int))
    labels[rng.random(labels.shape) < 0.15] = 0
    ids, polygons = chunk_polygons(labels)
    reference = _reference(labels)
    assert list(ids) == sorted(reference)
    for cell, polygon in zip(ids, polygons, strict=True):
        ref = reference[cell]
        # spatialdata returns a hole as a polygon of its own; the region is the rings' odd cover
        ref = shapely.symmetric_difference_all(list(getattr(ref, "geoms", [ref])))
        assert polygon.is_valid
        assert shapely.symmetric_difference(polygon, ref).area < 1e-9


def test_holes_are_interiors_and_separate_pieces_a_multipolygon():
    labels = np.zeros((9, 12), int)
    labels[1:8, 1:8] = 3
    labels[3:6, 3:6] = 0  # a hole
    labels[4, 4] = 3  # an island of the same cell inside the hole
    labels[2, 10] = 3  # a separate piece
    labels[7, 9], labels[6, 10] = 4, 4  # diagonal only: two pieces
    ids, polygons = chunk_polygons(labels, 10, 20)
    assert list(ids) == [3, 4]
    cell = polygons[0]
    assert cell.geom_type == "MultiPolygon" and len(cell.geoms) == 3
    assert sum(len(p.interiors) for p in cell.geoms) == 1
    assert shapely.contains_xy(cell, [24, 20 + 4.0, 30], [14, 10 + 3.0, 12]).tolist() == [True, False, True]
    assert polygons[1].geom_type == "MultiPolygon" and len(polygons[1].geoms) == 2
    empty_ids, empty = chunk_polygons(np.zeros((4, 4), int))
    assert len(empty_ids) == 0 and len(empty) == 0
