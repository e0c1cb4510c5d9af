"""Write a segmentation's elements (labels, shapes, table) the same way for every method."""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import dask.array as da
from spatialdata import SpatialData
from spatialdata.models import Labels2DModel, TableModel
from spatialdata.transformations import get_transformation

from jointseg._core.aggregation import aggregate_indexed, check_cell_id_column
from jointseg._core.backed import announce_written, materialise, store_element
from jointseg._core.constants import POINTS_CELL_ID, UNS_KEY
from jointseg._core.shapes import labels_to_shapes
from jointseg._core.tiling import label_ids, relabel_sequential
from jointseg._core.transcripts import TranscriptIndex
from jointseg._core.utils import check_new_key

logger = logging.getLogger("jointseg")


def annotated_element(table: ad.AnnData) -> str:
    """The element (labels or shapes) a table annotates; the first one if it annotates several."""
    region = table.uns[TableModel.ATTRS_KEY][TableModel.REGION_KEY]
    return region[0] if isinstance(region, list) else region


def cell_shapes_key(sdata: SpatialData, table: ad.AnnData) -> str | None:
    """The polygons of ``table``'s cells: the shapes the table annotates (sopa's tables, or after
    :func:`jointseg.io.annotate_table`), else those :func:`write_segmentation` recorded for the
    labels it annotates; None if neither.
    """
    region = annotated_element(table)
    if region in sdata.shapes:
        return region
    return table.uns.get(UNS_KEY, {}).get(region, {}).get("shapes_key")


def check_outputs_free(sdata: SpatialData, keys: list[str], points_key: str, *, overwrite: bool) -> None:
    """Raise before any work is done if an output element or the points' cell id column exists."""
    for key in keys:
        check_new_key(sdata, key, overwrite=overwrite)
    check_cell_id_column(sdata, points_key, POINTS_CELL_ID, overwrite=overwrite)


def write_segmentation(
    sdata: SpatialData,
    labels: da.Array,
    index: TranscriptIndex,
    *,
    image_key: str,
    points_key: str,
    nuclei_key: str | None,
    labels_key: str,
    shapes_key: str,
    table_key: str,
    method: str,
    params: dict[str, Any],
    coordinate_system: str,
    overwrite: bool,
) -> None:
    """Add cell labels (renumbered 1..N, uint32, the image's grid and transformations), their
    polygons and the count table (from ``index``, the transcripts on the image's pixel grid); record
    ``params`` in ``table.uns["jointseg"][labels_key]``.
    """
    labels, clean_up = materialise(sdata, labels)
    ids = label_ids(labels)
    if not len(ids):
        clean_up()
        raise ValueError(f"{method} found no cells; nothing was written. Check the inputs and the method's parameters.")
    labels = relabel_sequential(labels, ids)
    element = Labels2DModel.parse(
        labels, dims=("y", "x"), transformations=get_transformation(sdata[image_key], get_all=True)
    )
    store_element(sdata, labels_key, element, overwrite=overwrite)
    clean_up()
    store_element(sdata, shapes_key, labels_to_shapes(sdata[labels_key]), overwrite=overwrite)
    aggregate_indexed(
        sdata,
        index,
        labels_key=labels_key,
        points_key=points_key,
        nuclei_key=nuclei_key,
        table_key=table_key,
        points_cell_id_key=POINTS_CELL_ID,
        coordinate_system=coordinate_system,
    )
    table = sdata[table_key]
    table.uns[UNS_KEY][labels_key] = {"method": method, "shapes_key": shapes_key, **params}
    store_element(sdata, table_key, table, overwrite=True)
    announce_written(sdata, [labels_key, shapes_key, table_key])
    logger.info("%s: %d cells -> %r, %r, %r.", method, table.n_obs, labels_key, shapes_key, table_key)
