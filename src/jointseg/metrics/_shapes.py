"""Shape metrics of cell polygons (GeneSegNet's evaluation): convexity and elongation."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


def shape_metrics(shapes: gpd.GeoDataFrame, *, spacing: float = 1.0) -> pd.DataFrame:
    """Convexity and elongation of every polygon.

    Convexity = perimeter of the convex hull / perimeter (1 for convex cells, lower for ragged
    ones). Elongation = smallest / largest eigenvalue of the covariance of boundary points (1 for
    a disc or a square, 0.12 for a 4:1 rectangle, towards 0 for a sliver); the boundary is
    resampled every ``spacing`` units so that the points are evenly spread along it. Both are
    scale-free.

    Parameters
    ----------
    shapes
        Polygons (e.g. the ``cell_boundaries`` element), one per cell.
    spacing
        Boundary resampling step, in the polygons' units (pixels for jointseg's shapes).

    Returns
    -------
    Table indexed like ``shapes`` with columns ``convexity``, ``elongation``.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import box
    >>> m = shape_metrics(gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10), box(0, 0, 40, 10)]))
    >>> m["convexity"].tolist(), m["elongation"].round(2).tolist()
    ([1.0, 1.0], [1.0, 0.12])

    """
    geoms = shapes.geometry.to_numpy()
    convexity = shapely.length(shapely.convex_hull(geoms)) / np.maximum(shapely.length(geoms), 1e-12)
    rings = shapely.segmentize(shapely.boundary(geoms), spacing)
    coords, owner = shapely.get_coordinates(rings, return_index=True)
    df = pd.DataFrame({"o": owner, "x": coords[:, 0], "y": coords[:, 1]}).drop_duplicates()  # closing points
    df["xx"], df["yy"], df["xy"] = df.x * df.x, df.y * df.y, df.x * df.y
    g = df.groupby("o").mean()
    vxx, vyy, vxy = g.xx - g.x**2, g.yy - g.y**2, g.xy - g.x * g.y
    half_gap = np.sqrt(((vxx - vyy) / 2) ** 2 + vxy**2)
    mid = (vxx + vyy) / 2
    elongation = ((mid - half_gap) / np.maximum(mid + half_gap, 1e-12)).clip(lower=0)
    return pd.DataFrame(
        {"convexity": convexity, "elongation": elongation.reindex(range(len(geoms))).to_numpy()},
        index=shapes.index,
    )
