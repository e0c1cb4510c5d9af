"""Quality-control panel of a segmentation: where the cells are, how full and how shaped they are."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from spatialdata import SpatialData
from spatialdata.transformations import get_transformation

from jointseg._core.constants import DEFAULT_CS, POINTS_CELL_ID, POINTS_KEY, TABLE_KEY
from jointseg._core.outputs import cell_shapes_key
from jointseg._core.units import microns_per_unit
from jointseg.metrics import assignment_summary, shape_metrics


def qc(
    sdata: SpatialData,
    *,
    table_key: str = TABLE_KEY,
    shapes_key: str | None = None,
    points_key: str | None = POINTS_KEY,
    tile_um: float = 50.0,
    coordinate_system: str = DEFAULT_CS,
    figsize: tuple[float, float] = (15, 8.5),
    fig: Figure | None = None,
) -> Figure:
    """Six panels on one segmentation: cells per tile and the assigned fraction per tile (maps),
    transcripts per cell, cell area, convexity and elongation (histograms, medians marked).

    Parameters
    ----------
    sdata
        SpatialData with a jointseg segmentation.
    table_key
        The segmentation's table.
    shapes_key
        Its polygons, for the shape metrics; by default the ones recorded with the table.
    points_key
        Transcripts with the ``jg_cell_id`` column the segmentation wrote, for the assigned-fraction
        map; None leaves that panel out.
    tile_um
        Tile edge of the two maps, in microns.
    coordinate_system
        Coordinate system linking the elements.
    figsize
        Size in inches of the new figure.
    fig
        A figure (or subfigure, ``plt.figure().subfigures(...)``) to draw the six panels in, instead of
        a new one.

    Returns
    -------
    The figure.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.xenium_breast(subset="small")
    >>> jg.pp.nuclei(sdata)
    >>> jg.seg.expand_nuclei(sdata)
    >>> fig = jg.pl.qc(sdata)

    """
    table = sdata[table_key]
    shapes_key = shapes_key or cell_shapes_key(sdata, table)
    um = microns_per_unit(sdata, coordinate_system)
    summary = assignment_summary(table, table_key=table_key)

    if fig is None:
        fig = plt.figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(2, 3)
    centres = np.asarray(table.obsm["spatial"]) * um
    edges = _tile_edges(centres, tile_um)
    cells, _, _ = np.histogram2d(centres[:, 1], centres[:, 0], bins=edges)
    _tile_map(axes[0, 0], cells, edges, f"cells per {tile_um:g} x {tile_um:g} um tile", "viridis")

    if points_key is not None and POINTS_CELL_ID in sdata[points_key].columns:
        xy, assigned = _points_in_microns(sdata, points_key, coordinate_system, um)
        total, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=edges)
        inside, _, _ = np.histogram2d(xy[assigned, 1], xy[assigned, 0], bins=edges)
        fraction = np.where(total > 0, inside / np.maximum(total, 1), np.nan)
        _tile_map(axes[0, 1], fraction, edges, "fraction of transcripts assigned", "magma", vmin=0, vmax=1)
    else:
        axes[0, 1].set_axis_off()
        axes[0, 1].text(0.5, 0.5, "no per-transcript cell ids", ha="center", va="center")

    _histogram(axes[0, 2], table.obs["n_transcripts"].to_numpy(), "transcripts per cell")
    _histogram(axes[1, 0], table.obs["area_um2"].to_numpy(), "cell area (um$^2$)")
    if shapes_key is not None:
        shapes = shape_metrics(sdata[shapes_key])
        _histogram(axes[1, 1], shapes["convexity"].to_numpy(), "convexity (1 = convex)")
        _histogram(axes[1, 2], shapes["elongation"].to_numpy(), "elongation (1 = round)")
    else:
        for ax in axes[1, 1:]:
            ax.set_axis_off()
    fig.suptitle(
        f"{table_key}: {summary['n_cells']:,} cells, {summary['fraction_assigned']:.1%} of transcripts assigned, "
        f"median {summary['median_transcripts_per_cell']:.0f} transcripts / cell"
    )
    return fig


def _tile_edges(centres: np.ndarray, tile_um: float) -> list[np.ndarray]:
    lo = np.floor(centres.min(axis=0) / tile_um) * tile_um if len(centres) else np.zeros(2)
    hi = np.ceil(centres.max(axis=0) / tile_um + 1e-9) * tile_um if len(centres) else np.full(2, tile_um)
    return [np.arange(lo[1], hi[1] + tile_um / 2, tile_um), np.arange(lo[0], hi[0] + tile_um / 2, tile_um)]


def _tile_map(ax, values: np.ndarray, edges: list[np.ndarray], title: str, cmap: str, **limits) -> None:
    y, x = edges
    image = ax.imshow(values, extent=(x[0], x[-1], y[-1], y[0]), cmap=cmap, interpolation="nearest", **limits)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")


def _points_in_microns(sdata, points_key: str, coordinate_system: str, um: float) -> tuple[np.ndarray, np.ndarray]:
    df = sdata[points_key][["x", "y", POINTS_CELL_ID]].compute()
    transform = get_transformation(sdata[points_key], to_coordinate_system=coordinate_system)
    matrix = transform.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    xy = (np.c_[df["x"], df["y"], np.ones(len(df))] @ matrix.T)[:, :2] * um
    return xy, df[POINTS_CELL_ID].to_numpy() > 0


def _histogram(ax, values: np.ndarray, label: str) -> None:
    values = values[np.isfinite(values)]
    ax.hist(values, bins=40, color="0.35")
    if len(values):
        median = float(np.median(values))
        ax.axvline(median, color="crimson", lw=1.5, label=f"median {median:.3g}")
        ax.legend(frameon=False)
    ax.set_xlabel(label)
    ax.set_ylabel("cells")
