"""Write a segmentation's elements (labels, shapes, table) the same way for every method."""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
from spatialdata import SpatialData, relabel_sequential
from spatialdata.models import Labels2DModel
from spatialdata.transformations import get_transformation

from jointseg._constants import POINTS_CELL_ID, UNS_KEY
from jointseg._points import TranscriptIndex
from jointseg._utils import check_new_key
from jointseg.seg._shapes import labels_to_shapes
from jointseg.tl._aggregate import aggregate_indexed, check_cell_id_column

logger = logging.getLogger("jointseg")


def check_outputs_free(sdata: SpatialData, keys: list[str], points_key: str, *, overwrite: bool) -> None:
    """Raise before any work is done if an output element or the points' cell id column exists."""
    for key in keys:
        check_new_key(sdata, key, overwrite=overwrite)
    check_cell_id_column(sdata, points_key, POINTS_CELL_ID, overwrite=overwrite)


def _store(sdata: SpatialData, key: str, element, *, overwrite: bool) -> None:
    """Add an element, and write it to disk right away when ``sdata`` is backed by a zarr store."""
    if key in sdata and overwrite and sdata.is_backed() and key in _on_disk(sdata):
        sdata.delete_element_from_disk(key)
    sdata[key] = element
    if sdata.is_backed():
        sdata.write_element(key, overwrite=overwrite)


def _on_disk(sdata: SpatialData) -> set[str]:
    return {path.split("/")[-1] for path in sdata.elements_paths_on_disk()}


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
    labels = relabel_sequential(labels.persist()).astype(np.uint32)
    element = Labels2DModel.parse(
        labels, dims=("y", "x"), transformations=get_transformation(sdata[image_key], get_all=True)
    )
    _store(sdata, labels_key, element, overwrite=overwrite)
    _store(sdata, shapes_key, labels_to_shapes(sdata[labels_key]), overwrite=overwrite)
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
    if sdata.is_backed():
        sdata.write_element(table_key, overwrite=True)
    logger.info("%s: %d cells -> %r, %r, %r.", method, table.n_obs, labels_key, shapes_key, table_key)
