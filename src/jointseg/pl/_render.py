"""Drawing SpatialData elements with spatialdata-plot: the stain, a window of it, the axes' frame."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import spatialdata
import spatialdata_plot  # noqa: F401  (registers the .pl accessor)
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from spatialdata import SpatialData
from spatialdata.models import get_channel_names
from spatialdata.transformations import get_transformation

from jointseg._core.utils import image_2d

Window = tuple[int, int, int, int]


def view(
    sdata: SpatialData, keys: list[str | None], image_key: str, region: Window | None, coordinate_system: str
) -> tuple[SpatialData, tuple[float, float, float, float]]:
    """The elements ``keys`` (tables included) cropped to ``region`` (a ``(y0, y1, x0, x1)`` window of
    ``image_key``'s pixels; None: the whole image), and the window's ``(xmin, xmax, ymin, ymax)`` in
    ``coordinate_system``.
    """
    h, w = image_2d(sdata, image_key).shape
    y0, y1, x0, x1 = region or (0, h, 0, w)
    matrix = get_transformation(sdata[image_key], to_coordinate_system=coordinate_system).to_affine_matrix(
        input_axes=("x", "y"), output_axes=("x", "y")
    )
    corners = np.array([[x0 - 0.5, y0 - 0.5, 1.0], [x1 - 0.5, y1 - 0.5, 1.0]]) @ matrix.T
    (xmin, ymin), (xmax, ymax) = corners.min(axis=0)[:2], corners.max(axis=0)[:2]
    part = sdata.subset([k for k in keys if k is not None], filter_tables=False)
    if region is not None:
        part = spatialdata.bounding_box_query(
            part, axes=("x", "y"), min_coordinate=[xmin, ymin], max_coordinate=[xmax, ymax],
            target_coordinate_system=coordinate_system, filter_table=False,
        )  # fmt: skip
    return part, (xmin, xmax, ymin, ymax)


def render_stain(part: SpatialData, image_key: str, *, channel: int | str | None, region: Window | None, full):
    """``part.pl.render_images`` of the stain channel in grey, contrast from the 1st-99.5th percentile
    of the window (``full``: the uncropped SpatialData, to read the percentiles from).
    """
    image = image_2d(full, image_key, channel=channel)
    h, w = image.shape
    y0, y1, x0, x1 = region or (0, h, 0, w)
    step = max(1, int(np.sqrt((y1 - y0) * (x1 - x0) / 4e6)))
    lo, hi = np.percentile(np.asarray(image.data[y0:y1:step, x0:x1:step], dtype=np.float32), [1, 99.5])
    several = len(get_channel_names(part[image_key])) > 1
    options = {"channel": 0 if channel is None else channel} if several or channel is not None else {}
    return part.pl.render_images(
        image_key, cmap="gray", norm=Normalize(vmin=lo, vmax=max(hi, lo + 1e-6), clip=True), colorbar=False,
        **options,
    )  # fmt: skip


def show(plot: SpatialData, ax: Axes | None, limits, coordinate_system: str, *, size: float = 8.0, **kwargs) -> Axes:
    """``plot.pl.show`` on ``ax`` (or a new figure shaped like the window), limited to the window."""
    xmin, xmax, ymin, ymax = limits
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size * (ymax - ymin) / max(xmax - xmin, 1e-9)))
    plot.pl.show(ax=ax, coordinate_systems=coordinate_system, title="", colorbar=False, **kwargs)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymax, ymin)
    ax.set_axis_off()
    return ax
