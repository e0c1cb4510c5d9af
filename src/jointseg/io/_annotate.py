"""Point a table at another element of the same cells (labels or polygons), the spatialdata way."""

from __future__ import annotations

import logging

import pandas as pd
from spatialdata import SpatialData
from spatialdata.models import TableModel

from jointseg._core.backed import announce_written, store_element
from jointseg._core.constants import TABLE_KEY

logger = logging.getLogger("jointseg")


def annotate_table(sdata: SpatialData, element_key: str, *, table_key: str = TABLE_KEY) -> None:
    """Make ``table_key`` annotate ``element_key``: the cells' labels or their polygons.

    jointseg's tables annotate the cell labels (as spatialdata-io's Xenium reader does). The
    polygons written beside them are indexed by the same ids, with the same dtype, as the table's
    ``cell_id``, so the table can annotate them instead; tools that look a table up through the
    polygons need that: spatialdata-plot's ``render_shapes(..., color=<gene or obs column>)``,
    :func:`spatialdata.get_values` and :func:`sopa.io.explorer.write`. This sets ``obs["region"]``
    and calls :meth:`spatialdata.SpatialData.set_table_annotates_spatialelement`; call it again with
    the labels to go back. jointseg's own tools accept the table either way. In a backed SpatialData
    the table is rewritten in the store (unless ``jg.settings.auto_save_on_disk`` is False).

    Parameters
    ----------
    sdata
        SpatialData holding the table and the element.
    element_key
        Labels or shapes whose ids are the table's instance ids.
    table_key
        The table, annotating one element.

    Raises
    ------
    KeyError
        If ``element_key`` is not a labels or shapes element, or some of the table's cells have no
        polygon in it.
    ValueError
        If the table annotates several elements.

    Examples
    --------
    >>> import jointseg as jg, spatialdata
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.seg.expand_nuclei(sdata, nuclei_key="true_nuclei")
    >>> jg.io.annotate_table(sdata, "cell_boundaries")
    >>> spatialdata.get_values("n_transcripts", element_name="cell_boundaries", sdata=sdata, table_name="table").shape
    (5, 1)

    """
    if element_key not in sdata.labels and element_key not in sdata.shapes:
        raise KeyError(f"No labels or shapes element {element_key!r}.")
    table = sdata[table_key]
    attrs = table.uns[TableModel.ATTRS_KEY]
    region = attrs[TableModel.REGION_KEY]
    if isinstance(region, list) and len(region) > 1:
        raise ValueError(f"Table {table_key!r} annotates several elements {region}; annotate_table needs one.")
    region_key, instance_key = attrs[TableModel.REGION_KEY_KEY], attrs[TableModel.INSTANCE_KEY]
    if element_key in sdata.shapes:
        missing = ~table.obs[instance_key].isin(sdata.shapes[element_key].index)
        if missing.any():
            raise KeyError(
                f"{int(missing.sum())} cells of table {table_key!r} have no polygon in {element_key!r} "
                f"(its index must hold the table's {instance_key!r} values, same dtype)."
            )
    table.obs[region_key] = pd.Categorical([element_key] * table.n_obs)
    sdata.set_table_annotates_spatialelement(table_key, region=element_key)
    store_element(sdata, table_key, table, overwrite=True)
    announce_written(sdata, [table_key])
    logger.info("Table %r now annotates %r.", table_key, element_key)
