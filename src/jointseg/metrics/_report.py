"""One row of reference-free quality metrics for a segmentation."""

from __future__ import annotations

from spatialdata import SpatialData

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, TABLE_KEY, UNS_KEY
from jointseg._core.utils import resolve_key
from jointseg.metrics._assignment import assignment_summary, mecr
from jointseg.metrics._calling import cell_calling
from jointseg.metrics._shapes import shape_metrics


def segmentation_report(
    sdata: SpatialData,
    *,
    pairs: list[tuple[str, str]],
    labels_key: str | None = CELL_LABELS_KEY,
    shapes_key: str | None = CELL_SHAPES_KEY,
    table_key: str = TABLE_KEY,
    points_key: str | None = None,
    deltas: tuple[int, ...] = (3, 5, 7),
    coordinate_system: str = DEFAULT_CS,
) -> dict[str, float]:
    """Cells, assigned fraction, transcripts per cell, MECR, cell calling, convexity, elongation, area.

    Parameters
    ----------
    sdata
        SpatialData with a segmentation's table (and its labels and shapes).
    pairs
        Mutually exclusive gene pairs for :func:`mecr` (see :func:`exclusive_marker_pairs`); none: MECR is NaN.
    labels_key, shapes_key
        The segmentation's labels (for cell calling) and polygons (for shapes); ``None`` skips
        those metrics (e.g. for a vendor segmentation known only by per-transcript ids).
    table_key
        Its count table: jointseg's, or another tool's (sopa's ``aggregate``, a vendor's reader), for
        which the assigned fraction is its counts over all the transcripts of ``points_key``.
    points_key, deltas, coordinate_system
        See :func:`cell_calling`.

    Returns
    -------
    ``n_cells``, ``fraction_assigned``, ``median_transcripts_per_cell``, ``mecr``,
    ``cell_calling_<delta>`` per delta, ``median_convexity``, ``median_elongation``,
    ``median_area_um2``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> sdata["true_shapes"] = jg.seg.labels_to_shapes(sdata["true_cells"])
    >>> pairs = [("T0_0", "T1_0")]
    >>> row = segmentation_report(sdata, pairs=pairs, labels_key="true_cells", shapes_key="true_shapes")
    >>> row["n_cells"], sorted(row)[:3]
    (5, ['cell_calling_3', 'cell_calling_5', 'cell_calling_7'])

    """
    table = sdata[table_key]
    total = None
    if table_key not in table.uns.get(UNS_KEY, {}):  # another tool's table: count the slide's transcripts
        total = int(sdata.points[resolve_key(sdata, "points", points_key)].shape[0].compute())
    summary = assignment_summary(table, table_key=table_key, n_transcripts_total=total)
    row = {
        "n_cells": summary["n_cells"],
        "fraction_assigned": summary["fraction_assigned"],
        "median_transcripts_per_cell": summary["median_transcripts_per_cell"],
        "mecr": mecr(table, pairs) if pairs else float("nan"),
        "median_area_um2": summary["median_area_um2"],
    }
    if labels_key is not None:
        calling = cell_calling(
            sdata, labels_key=labels_key, points_key=points_key, deltas=deltas, coordinate_system=coordinate_system
        )
        row.update({f"cell_calling_{d}": v for d, v in calling.items()})
    if shapes_key is not None:
        shapes = shape_metrics(sdata[shapes_key])
        row["median_convexity"] = float(shapes["convexity"].median())
        row["median_elongation"] = float(shapes["elongation"].median())
    return row
