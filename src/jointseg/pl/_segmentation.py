"""Segmentation overlay: stain, cell and nucleus boundaries, transcripts (drawn by spatialdata-plot)."""

from __future__ import annotations

from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, to_hex
from spatialdata import SpatialData
from spatialdata.models import PointsModel
from spatialdata.transformations import get_transformation

from jointseg._core.constants import CELL_LABELS_KEY, DEFAULT_CS, POINTS_CELL_ID
from jointseg._core.shapes import labels_to_shapes
from jointseg._core.transcripts import feature_key, points_to_pixel_matrix
from jointseg._core.utils import image_2d, resolve_key
from jointseg.pl._render import render_stain, show, view

_SHOWN = "jg_shown_transcripts"
_OUTLINES = "jg_outlines"
_GREY = "#999999"
#: Windows up to this size get their outlines as polygons (crisp); larger ones as rasterised labels.
_MAX_VECTOR_PIXELS = 16_000_000


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

    Drawn with spatialdata-plot (``render_images``, ``render_labels``, ``render_points``), in the
    units of ``coordinate_system``: the same figure as
    ``sdata.pl.render_images(...).pl.render_labels(...).pl.show()``, with jointseg's choices of
    contrast, colours and transcript colouring.

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
        ``(y0, y1, x0, x1)`` pixel window of the stain to show (default: the whole image).
    max_points
        Largest number of transcripts drawn.
    channel
        Stain channel (name or index) of a multichannel image.
    coordinate_system
        Coordinate system to draw in (and linking the elements).
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
    if color_by not in ("assignment", "gene", "cell"):
        raise ValueError(f"color_by must be 'assignment', 'gene' or 'cell', got {color_by!r}.")
    image_key = resolve_key(sdata, "images", image_key)
    part, limits = view(sdata, [image_key, labels_key, nuclei_key], image_key, region, coordinate_system)
    layers, legend = [], {}
    if points_key is not None:
        layers, legend = _transcript_layers(
            sdata, points_key, image_key, region, color_by=color_by, genes=genes, max_points=max_points,
            coordinate_system=coordinate_system,
        )  # fmt: skip
    for name, element, _ in layers:
        part[name] = element
    outlined = [(key, colour) for key, colour in ((labels_key, "red"), (nuclei_key, "cyan")) if key is not None]
    height, width = image_2d(part, image_key).shape
    vector = height * width <= _MAX_VECTOR_PIXELS
    for key, _ in outlined:
        if vector:  # crisp outlines: polygons of the window's labels (spatialdata-plot rasterises labels)
            part[f"{key}_{_OUTLINES}"] = labels_to_shapes(part[key])
    plot = render_stain(part, image_key, channel=channel, region=region, full=sdata)
    for key, colour in outlined:
        if vector:
            plot = plot.pl.render_shapes(
                f"{key}_{_OUTLINES}", fill_alpha=0.0, outline_alpha=1.0, outline_color=colour, outline_width=0.8
            )
        else:
            plot = plot.pl.render_labels(key, fill_alpha=0.0, outline_alpha=1.0, outline_color=colour, contour_px=2)
    for name, _, options in layers:
        plot = plot.pl.render_points(name, **options)
    ax = show(plot, ax, limits, coordinate_system, **legend)
    if ax.get_legend() is not None and not legend:
        ax.get_legend().remove()
    return ax


def _transcript_layers(sdata, points_key, image_key, region, *, color_by, genes, max_points, coordinate_system):
    """A random subset of the transcripts in the window, as points elements to draw one after the
    other (the grey background ones first), each with its ``render_points`` options; and the legend
    options for ``show``.
    """
    pts = sdata.points[points_key]
    gene_key = feature_key(sdata, points_key)
    if color_by in ("assignment", "cell") and POINTS_CELL_ID not in pts.columns:
        raise KeyError(f"Points {points_key!r} have no {POINTS_CELL_ID!r} column: segment first, or color_by='gene'.")
    df = pts[["x", "y", POINTS_CELL_ID if color_by != "gene" else gene_key]].compute()
    if region is not None:
        y0, y1, x0, x1 = region
        pix = (
            np.c_[df["x"], df["y"], np.ones(len(df))]
            @ points_to_pixel_matrix(sdata, points_key, image_key, coordinate_system=coordinate_system).T
        )
        df = df[(pix[:, 0] >= x0 - 0.5) & (pix[:, 0] < x1 - 0.5) & (pix[:, 1] >= y0 - 0.5) & (pix[:, 1] < y1 - 0.5)]
    if len(df) > max_points:
        df = df.iloc[np.sort(np.random.default_rng(0).choice(len(df), max_points, replace=False))]
    transformations = get_transformation(pts, get_all=True)

    def element(rows: np.ndarray, **columns) -> object:
        frame = pd.DataFrame({"x": df["x"].to_numpy()[rows], "y": df["y"].to_numpy()[rows], **columns})
        return PointsModel.parse(frame, transformations=transformations)

    if color_by == "assignment":
        on = df[POINTS_CELL_ID].to_numpy() > 0
        label = pd.Categorical(np.where(on, "assigned", "unassigned"), categories=["assigned", "unassigned"])
        layer = element(np.arange(len(df)), transcripts=label)
        options = {"color": "transcripts", "palette": {"assigned": "gold", "unassigned": _GREY}}
        return [(f"{_SHOWN}_all", layer, options)], {"legend_loc": "upper right"}
    if color_by == "cell":
        cell = df[POINTS_CELL_ID].to_numpy()
        on = cell > 0
        # Neighbouring ids get distant colours: a multiplicative hash spreads them over the cyclic map.
        hashed = element(np.flatnonzero(on), cell=(cell[on] * 0.618034) % 1.0)
        return [
            (f"{_SHOWN}_other", element(np.flatnonzero(~on)), {"color": _GREY}),
            (f"{_SHOWN}_cells", hashed, {"color": "cell", "cmap": "hsv", "norm": Normalize(0, 1), "size": 1.5}),
        ], {}
    names = df[gene_key].astype(str).to_numpy()
    chosen = list(genes) if genes is not None else list(pd.Series(names).value_counts().index[:8])
    picked = np.isin(names, chosen)
    gene = pd.Categorical(names[picked], categories=chosen)
    colours = [to_hex(plt.get_cmap("tab10")(k)) for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)]  # no grey: that is "other"
    return [
        (f"{_SHOWN}_other", element(np.flatnonzero(~picked)), {"color": _GREY, "alpha": 0.4}),
        (f"{_SHOWN}_genes", element(np.flatnonzero(picked), gene=gene),
         {"color": "gene", "palette": {g: colours[k % len(colours)] for k, g in enumerate(chosen)}, "size": 6.0}),
    ], {"legend_loc": "upper right"}  # fmt: skip
