"""Polygons of label images."""

from __future__ import annotations

from itertools import pairwise

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from spatialdata import to_polygons
from spatialdata.models import ShapesModel
from spatialdata.transformations import get_transformation

from jointseg._core.memory import release_memory


def _band_polygons(band: xr.DataArray, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """Label ids and polygons (collinear vertices removed) of a band of rows starting at row ``y0``."""
    gdf = to_polygons(band)
    ids = gdf["label"].to_numpy() if "label" in gdf.columns else gdf.index.to_numpy()
    # Pixel contours put a vertex at every pixel step; dropping the collinear ones (Douglas-Peucker
    # with tolerance 0: the same polygons exactly) keeps ~1/3.6 of them.
    geometry = shapely.simplify(gdf.geometry.to_numpy(), 0.0, preserve_topology=False)
    return ids.astype(np.int64), shapely.transform(geometry, lambda xy: xy + np.array([0.0, y0]))


def labels_to_shapes(labels: xr.DataArray) -> gpd.GeoDataFrame:
    """Polygons of a labels element, one row per label in increasing id order, indexed by the id
    (the labels' own integer dtype, as the ``cell_id`` of jointseg's tables, so a table can annotate
    either element), with the labels' transformations.

    Uses :func:`spatialdata.to_polygons` (scikit-image contours: pixel centres at integer
    coordinates, the same convention as :func:`jointseg.tl.aggregate`'s lookup) and removes the
    duplicated ``label`` index/column it returns in spatialdata 0.7, which breaks spatial joins.
    Collinear vertices are removed (the polygons are unchanged).

    The labels are vectorised one band of chunk rows at a time, the pieces of a cell that spans
    bands joined afterwards: ``to_polygons`` holds every contour of its input at once, at a vertex
    per pixel step (~1 GB for a whole slide of 116,000 cells), and a band holds only its share.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> shapes = labels_to_shapes(sdata["true_cells"])
    >>> list(shapes.index) == list(range(1, 6)), shapes.index.dtype == sdata["true_cells"].dtype
    (True, True)

    """
    edges = np.cumsum((0, *labels.data.chunks[0]))
    parts = [_band_polygons(labels.isel(y=slice(y0, y1)), y0) for y0, y1 in pairwise(edges)]
    release_memory(step_bytes=labels.nbytes)
    ids = np.concatenate([p[0] for p in parts])
    geometry = np.concatenate([p[1] for p in parts])
    order = np.argsort(ids, kind="stable")
    ids, geometry = ids[order], geometry[order]
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    joined = geometry[first]
    for k in np.flatnonzero(counts > 1):  # cells cut by a band edge: the pieces share that edge
        pieces = geometry[first[k] : first[k] + counts[k]]
        joined[k] = shapely.simplify(shapely.union_all(pieces), 0.0, preserve_topology=False)
    gdf = gpd.GeoDataFrame(geometry=joined, index=pd.Index(unique.astype(labels.dtype)))
    return ShapesModel.parse(gdf, transformations=get_transformation(labels, get_all=True))
