"""Cell types over the stain, and a marker dotplot per type."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from spatialdata import SpatialData

from jointseg._core.constants import CELL_LABELS_KEY, DEFAULT_CS, TABLE_KEY
from jointseg._core.outputs import annotated_element
from jointseg._core.tables import raw_counts
from jointseg._core.utils import resolve_key
from jointseg.pl._render import render_stain, show, view
from jointseg.tl import marker_table


def cell_types(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    labels_key: str = CELL_LABELS_KEY,
    table_key: str = TABLE_KEY,
    key: str = "cell_type",
    region: tuple[int, int, int, int] | None = None,
    alpha: float = 0.45,
    coordinate_system: str = DEFAULT_CS,
    ax: Axes | None = None,
) -> Axes:
    """Cells filled with the colour of their ``obs[key]`` category, over the stain, with a legend.

    Drawn with spatialdata-plot: ``render_labels(labels_key, color=key, table_name=table_key)``, or
    ``render_shapes`` of the polygons when the table annotates them (see
    :func:`jointseg.io.annotate_table`).

    Parameters
    ----------
    sdata
        SpatialData with the stain, the cell labels and their table.
    image_key, labels_key, table_key
        The stain, the cell labels, and their table.
    key
        Categorical ``obs`` column (e.g. from :func:`jointseg.tl.pseudolabels`); the table is not
        modified (spatialdata-plot colours a copy of another column by its distinct values).
    region
        ``(y0, y1, x0, x1)`` pixel window of the stain (default: everything).
    alpha
        Opacity of the fill.
    coordinate_system
        Coordinate system to draw in.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    The axes.

    Examples
    --------
    >>> import jointseg as jg, pandas as pd
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> sdata["table"].obs["cell_type"] = pd.Categorical(sdata["truth"].obs["cell_type"].to_numpy())
    >>> ax = jg.pl.cell_types(sdata, image_key="morphology", labels_key="true_cells")

    """
    table = sdata[table_key]
    if key not in table.obs:
        raise KeyError(f"Table {table_key!r} has no obs column {key!r}; run jg.tl.pseudolabels(sdata) first.")
    image_key = resolve_key(sdata, "images", image_key)
    annotated = annotated_element(table)
    cells = annotated if annotated in sdata.shapes else labels_key
    part, limits = view(sdata, [image_key, cells, table_key], image_key, region, coordinate_system)
    plot = render_stain(part, image_key, channel=None, region=region, full=sdata)
    categories = list(table.obs[key].astype("category").cat.categories)
    colours = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20").colors
    palette = {str(c): to_hex(colours[i % len(colours)]) for i, c in enumerate(categories)}
    if cells in sdata.shapes:
        plot = plot.pl.render_shapes(cells, color=key, table_name=table_key, fill_alpha=alpha, palette=palette)
    else:
        plot = plot.pl.render_labels(
            cells, color=key, table_name=table_key, fill_alpha=alpha, outline_alpha=0.0, palette=palette
        )
    return show(plot, ax, limits, coordinate_system, legend_loc="upper right", legend_fontsize=7)


def marker_dotplot(
    sdata: SpatialData,
    *,
    table_key: str = TABLE_KEY,
    key: str = "cell_type",
    markers="breast",
    n_genes: int = 4,
    layer: str | None = "counts",
    ax: Axes | None = None,
) -> dict[str, Axes]:
    """Scanpy dotplot of the marker evidence: per coarse class, its ``n_genes`` markers with the
    highest mean expression in the cells of that class, against every class of ``obs[key]``.

    Returns the dict of axes from :func:`scanpy.pl.dotplot`, drawn on ``ax`` if given (its area is
    split into the dotplot and its legends).

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> jg.tl.pseudolabels(sdata, markers={"T cells": ["T0_0"], "Fibroblasts": ["T1_0"]}, fallback_markers=None,
    ...                    min_votes=1, min_counts=1)
    >>> axes = jg.pl.marker_dotplot(sdata, markers={"T cells": ["T0_0"], "Fibroblasts": ["T1_0"]})

    """
    table = sdata[table_key]
    if key not in table.obs:
        raise KeyError(f"Table {table_key!r} has no obs column {key!r}; run jg.tl.pseudolabels(sdata) first.")
    work = table.copy()
    work.X = raw_counts(table, layer, table_key=table_key).copy()
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    db = marker_table(markers)
    db = db[db["gene"].isin(work.var_names)]
    groups = {}
    for klass in work.obs[key].astype("category").cat.categories:
        genes = db.loc[db["coarse_class"] == klass, "gene"].unique()
        cells = (work.obs[key] == klass).to_numpy()
        if len(genes) == 0 or not cells.any():
            continue
        mean = np.asarray(work[cells, genes].X.mean(axis=0)).ravel()
        groups[str(klass)] = [str(g) for g in genes[np.argsort(mean)[::-1][:n_genes]]]
    if not groups:
        raise ValueError("No marker of the classes in obs[key] is in the table's genes.")
    return sc.pl.dotplot(work, groups, groupby=key, show=False, ax=ax)
