"""Segmentation overlay: stain, cell and nucleus boundaries, transcripts."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from skimage.segmentation import find_boundaries
from spatialdata import SpatialData

from jointseg._constants import CELL_LABELS_KEY, DEFAULT_CS
from jointseg._points import points_to_pixel_matrix
from jointseg._utils import image_2d, labels_2d, resolve_key


def segmentation(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    labels_key: str = CELL_LABELS_KEY,
    nuclei_key: str | None = None,
    points_key: str | None = None,
    region: tuple[int, int, int, int] | None = None,
    max_points: int = 20_000,
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
        Transcripts to scatter, coloured by assigned (yellow) or not (grey) when they carry a
        ``cell_id`` column; a random subset of at most ``max_points``.
    region
        ``(y0, y1, x0, x1)`` pixel window to show (default: the whole image).
    max_points
        Largest number of transcripts drawn.
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
    ax, (y0, y1, x0, x1) = draw_stain(sdata, image_key, region, ax)
    for key, colour in ((labels_key, "red"), (nuclei_key, "cyan")):
        if key is None:
            continue
        lab = np.asarray(labels_2d(sdata, key).data[y0:y1, x0:x1])
        edges = np.ma.masked_where(~find_boundaries(lab, mode="inner"), np.ones(lab.shape))
        ax.imshow(edges, cmap=plt.matplotlib.colors.ListedColormap([colour]), alpha=0.9, interpolation="nearest",
                  extent=extent((y0, y1, x0, x1)))  # fmt: skip
    if points_key is not None:
        pts = sdata.points[points_key]
        cols = ["x", "y"] + (["cell_id"] if "cell_id" in pts.columns else [])
        df = pts[cols].compute()
        pix = (
            np.c_[df["x"], df["y"], np.ones(len(df))]
            @ points_to_pixel_matrix(sdata, points_key, image_key, coordinate_system=coordinate_system).T
        )
        inside = (pix[:, 0] >= x0) & (pix[:, 0] < x1) & (pix[:, 1] >= y0) & (pix[:, 1] < y1)
        idx = np.flatnonzero(inside)
        if len(idx) > max_points:
            idx = np.random.default_rng(0).choice(idx, max_points, replace=False)
        colours = np.where(df["cell_id"].to_numpy()[idx] > 0, "gold", "0.6") if "cell_id" in df else "gold"
        ax.scatter(pix[idx, 0], pix[idx, 1], s=0.5, c=colours, linewidths=0)
    return finish(ax, (y0, y1, x0, x1))


def draw_stain(sdata: SpatialData, image_key: str, region, ax: Axes | None) -> tuple[Axes, tuple[int, int, int, int]]:
    """Draw the stain of ``region`` (1st-99.5th percentile contrast) on ``ax`` or a new figure."""
    image = image_2d(sdata, image_key)
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
