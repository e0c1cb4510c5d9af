"""Segmentation overlay: stain, cell and nucleus boundaries, transcripts."""

from __future__ import annotations

from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from skimage.segmentation import find_boundaries
from spatialdata import SpatialData

from jointseg._core.constants import CELL_LABELS_KEY, DEFAULT_CS, POINTS_CELL_ID
from jointseg._core.transcripts import feature_key, points_to_pixel_matrix
from jointseg._core.utils import image_2d, labels_2d, resolve_key


def segmentation(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    labels_key: str = CELL_LABELS_KEY,
    nuclei_key: str | None = None,
    points_key: str | None = None,
    color_by: Literal["assignment", "gene", "cell"] = "assignment",
    genes: list[str] | None = None,
    region: tuple[int, int, int, int] | None = None,
    max_points: int = 20_000,
    channel: int | str | None = None,
    coordinate_system: str = DEFAULT_CS,
    ax: Axes | None = None,
) -> Axes:
    """Overlay cell (and nucleus) boundaries, and optionally transcripts, on the stain.

    Parameters
    ----------
    sdata
        SpatialData with the stain and the labels.
    image_key
        Stain image; may be omitted if there is only one.
    labels_key, nuclei_key
        Cell labels (red boundaries) and optional nuclei labels (cyan).
    points_key
        Transcripts to scatter (a random subset of at most ``max_points``).
    color_by
        ``"assignment"``: assigned (gold) or not (grey), from the points' ``jg_cell_id`` column;
        ``"gene"``: one colour per gene of ``genes`` (default: the 8 most frequent in view), the
        others grey; ``"cell"``: one colour per cell, unassigned grey.
    genes
        Genes to colour with ``color_by="gene"``.
    region
        ``(y0, y1, x0, x1)`` pixel window to show (default: the whole image).
    max_points
        Largest number of transcripts drawn.
    channel
        Stain channel (name or index) of a multichannel image.
    coordinate_system
        Coordinate system linking the points to the image.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    The axes.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> ax = jg.pl.segmentation(sdata, image_key="morphology", labels_key="true_cells")

    """
    image_key = resolve_key(sdata, "images", image_key)
    ax, (y0, y1, x0, x1) = draw_stain(sdata, image_key, region, ax, channel=channel)
    for key, colour in ((labels_key, "red"), (nuclei_key, "cyan")):
        if key is None:
            continue
        lab = np.asarray(labels_2d(sdata, key).data[y0:y1, x0:x1])
        edges = np.ma.masked_where(~find_boundaries(lab, mode="inner"), np.ones(lab.shape))
        ax.imshow(edges, cmap=plt.matplotlib.colors.ListedColormap([colour]), alpha=0.9, interpolation="nearest",
                  extent=extent((y0, y1, x0, x1)))  # fmt: skip
    if points_key is not None:
        _draw_points(sdata, points_key, image_key, (y0, y1, x0, x1), ax, color_by=color_by, genes=genes,
                     max_points=max_points, coordinate_system=coordinate_system)  # fmt: skip
    return finish(ax, (y0, y1, x0, x1))


def _draw_points(sdata, points_key, image_key, region, ax, *, color_by, genes, max_points, coordinate_system) -> None:
    y0, y1, x0, x1 = region
    pts = sdata.points[points_key]
    gene_key = feature_key(sdata, points_key)
    if color_by not in ("assignment", "gene", "cell"):
        raise ValueError(f"color_by must be 'assignment', 'gene' or 'cell', got {color_by!r}.")
    if color_by in ("assignment", "cell") and POINTS_CELL_ID not in pts.columns:
        raise KeyError(f"Points {points_key!r} have no {POINTS_CELL_ID!r} column: segment first, or color_by='gene'.")
    cols = ["x", "y", POINTS_CELL_ID if color_by != "gene" else gene_key]
    df = pts[cols].compute()
    pix = (
        np.c_[df["x"], df["y"], np.ones(len(df))]
        @ points_to_pixel_matrix(sdata, points_key, image_key, coordinate_system=coordinate_system).T
    )
    inside = (pix[:, 0] >= x0 - 0.5) & (pix[:, 0] < x1 - 0.5) & (pix[:, 1] >= y0 - 0.5) & (pix[:, 1] < y1 - 0.5)
    idx = np.flatnonzero(inside)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(0).choice(idx, max_points, replace=False))
    x, y = pix[idx, 0], pix[idx, 1]
    if color_by == "assignment":
        ax.scatter(x, y, s=0.5, c=np.where(df[POINTS_CELL_ID].to_numpy()[idx] > 0, "gold", "0.6"), linewidths=0)
    elif color_by == "cell":
        cell = df[POINTS_CELL_ID].to_numpy()[idx]
        on = cell > 0
        ax.scatter(x[~on], y[~on], s=0.5, c="0.6", linewidths=0)
        # Neighbouring ids get distant colours: a multiplicative hash spreads them over the cyclic map.
        ax.scatter(x[on], y[on], s=1.5, c=(cell[on] * 0.618034) % 1.0, cmap="hsv", vmin=0, vmax=1, linewidths=0)
    else:
        names = df[gene_key].astype(str).to_numpy()[idx]
        shown = genes if genes is not None else list(pd.Series(names).value_counts().index[:8])
        other = ~np.isin(names, shown)
        ax.scatter(x[other], y[other], s=0.5, c="0.6", alpha=0.4, linewidths=0)
        for k, gene in enumerate(shown):
            sel = names == gene
            ax.scatter(x[sel], y[sel], s=7, color=plt.get_cmap("tab10")(k % 10), linewidths=0, label=gene)
        ax.legend(loc="upper right", markerscale=4, fontsize="small", framealpha=0.7)


def draw_stain(
    sdata: SpatialData, image_key: str, region, ax: Axes | None, *, channel: int | str | None = None
) -> tuple[Axes, tuple[int, int, int, int]]:
    """Draw the stain of ``region`` (1st-99.5th percentile contrast) on ``ax`` or a new figure."""
    image = image_2d(sdata, image_key, channel=channel)
    h, w = image.shape
    y0, y1, x0, x1 = region or (0, h, 0, w)
    stain = np.asarray(image.data[y0:y1, x0:x1], dtype=np.float32)
    lo, hi = np.percentile(stain, [1, 99.5])
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8 * (y1 - y0) / max(x1 - x0, 1)))
    ax.imshow(np.clip((stain - lo) / max(hi - lo, 1e-6), 0, 1), cmap="gray", extent=extent((y0, y1, x0, x1)))
    return ax, (y0, y1, x0, x1)


def extent(region: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """``imshow`` extent of a pixel window (pixel centres at integers)."""
    y0, y1, x0, x1 = region
    return (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)


def finish(ax: Axes, region: tuple[int, int, int, int]) -> Axes:
    """Limit ``ax`` to the window and hide the axes."""
    y0, y1, x0, x1 = region
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_axis_off()
    return ax
