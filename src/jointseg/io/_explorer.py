"""Export a segmentation to Xenium Explorer with sopa's maintained writer."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
from spatialdata import SpatialData
from spatialdata.models import ShapesModel, TableModel
from spatialdata.transformations import get_transformation

from jointseg._core.constants import DEFAULT_CS, IMAGE_KEY, NUCLEI_KEY, POINTS_KEY, TABLE_KEY
from jointseg._core.outputs import cell_shapes_key
from jointseg._core.shapes import labels_to_shapes
from jointseg._core.tables import COUNTS_LAYER, raw_counts
from jointseg._core.units import pixel_size_um

logger = logging.getLogger("jointseg")

_CELLS = "cells"
_NUCLEI = "nuclei"


def write_xenium_explorer(
    sdata: SpatialData,
    path: str | Path,
    *,
    table_key: str = TABLE_KEY,
    shapes_key: str | None = None,
    nuclei_key: str | None = NUCLEI_KEY,
    image_key: str = IMAGE_KEY,
    points_key: str | None = POINTS_KEY,
    coordinate_system: str = DEFAULT_CS,
    mode: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a segmentation as a Xenium Explorer experiment (open ``path/experiment.xenium``).

    The files are written by :func:`sopa.io.explorer.write` (install with
    ``pip install "jointseg[explorer]"``); this function only adapts jointseg's elements to what it
    expects:

    - cell polygons from ``shapes_key`` and, as the nucleus layer, the polygon of each cell's
      nucleus (``table.obs["nucleus_id"]``, recorded when the segmentation ran with nuclei). A cell
      without a nucleus shows its cell polygon in the nucleus layer, as sopa does when no nuclei are
      given;
    - the count matrix (``layers["counts"]``, else ``X``);
    - every categorical ``obs`` column (e.g. ``leiden``, ``cell_type``) as a cell grouping;
    - the transcripts and the image, as a 6-level pyramidal OME-TIFF.

    Cell ids in the Explorer are jointseg's label values written in the Explorer's alphabet (label
    1 is ``aaaaaaab-1``; :func:`sopa.io.explorer.int_cell_id` converts back), so a selection made
    in the Explorer maps back to ``table.obs["cell_id"]``.

    Parameters
    ----------
    sdata
        SpatialData with a jointseg segmentation.
    path
        Directory to create (or an empty one).
    table_key
        Cells x genes table, annotating the cell labels.
    shapes_key
        Cell polygons; by default the ones recorded with the segmentation in
        ``table.uns["jointseg"]``.
    nuclei_key
        Nuclei labels (or shapes indexed by nucleus id) for the nucleus layer; None shows the cell
        polygons there.
    image_key
        Image shown under the cells (all its channels are written).
    points_key
        Transcripts to show; None writes none.
    coordinate_system
        Coordinate system in microns that links the elements; it sets the Explorer's pixel size.
    mode
        sopa's file selection, e.g. ``"-it"`` writes everything but the image and the transcripts
        (a quick update after re-clustering).
    overwrite
        Replace the files of an existing, non-empty ``path``.

    Returns
    -------
    The directory written.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.xenium_breast(subset="small")
    >>> jg.pp.nuclei(sdata)
    >>> jg.seg.expand_nuclei(sdata, max_distance_um=5)
    >>> out = jg.io.write_xenium_explorer(sdata, "explorer_demo", overwrite=True)  # doctest: +SKIP
    >>> (out / "experiment.xenium").exists()  # doctest: +SKIP
    True

    """
    try:
        from sopa.io.explorer import str_cell_id, write, write_cell_categories
        from sopa.io.explorer.utils import is_valid_explorer_id
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('Xenium Explorer export uses sopa\'s writer: pip install "jointseg[explorer]"') from err
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise FileExistsError(f"{path} exists and is not an empty directory; pass overwrite=True to replace its files.")
    table = sdata[table_key]
    shapes_key = shapes_key or cell_shapes_key(sdata, table)
    if shapes_key is None:
        raise KeyError(f"Table {table_key!r} records no cell polygons; pass shapes_key.")
    attrs = table.uns[TableModel.ATTRS_KEY]
    cell_ids = table.obs[attrs[TableModel.INSTANCE_KEY]].to_numpy()
    if np.issubdtype(cell_ids.dtype, np.integer):
        explorer_ids = pd.Index([int(i) for i in cell_ids]).map(str_cell_id)
    elif all(map(is_valid_explorer_id, cell_ids)):  # sopa's tables already hold Explorer ids
        explorer_ids = pd.Index(cell_ids.astype(str))
    else:
        raise TypeError(f"Table {table_key!r} must have integer cell ids (or Xenium Explorer ids) to export.")

    cells = _cell_polygons(sdata, shapes_key, cell_ids, explorer_ids)
    shapes = {_CELLS: cells}
    if nuclei_key is not None:
        shapes[_NUCLEI] = _nucleus_polygons(sdata, nuclei_key, table, cells, explorer_ids)
    counts = raw_counts(table, COUNTS_LAYER, table_key=table_key)
    obs = pd.DataFrame(
        {"region": pd.Categorical([_CELLS] * table.n_obs), "cell": np.asarray(explorer_ids)}, index=explorer_ids
    )
    export_table = TableModel.parse(
        ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=table.var_names)),
        region=_CELLS,
        region_key="region",
        instance_key="cell",
    )
    export = SpatialData(
        images={image_key: sdata[image_key]},
        shapes=shapes,
        points={} if points_key is None else {points_key: sdata[points_key]},
        tables={table_key: export_table},
    )
    gene_column = None
    if points_key is not None:
        gene_column = sdata[points_key].attrs["spatialdata_attrs"].get("feature_key")
    # The cell groupings are written separately ("o" left out of sopa's call): only the table's own
    # categorical columns, not the region column SpatialData's table model requires.
    sopa_mode = "-o" if mode is None else (mode.replace("o", "") if mode.startswith("+") else mode + "o")
    write(
        str(path),
        export,
        table_key=table_key,
        image_key=image_key,
        shapes_key=_CELLS,
        nucleus_shapes_key=_NUCLEI if nuclei_key is not None else None,
        points_key=points_key,
        gene_column=gene_column,
        pixel_size=pixel_size_um(sdata, image_key, coordinate_system),
        mode=sopa_mode,
        run_name=table_key,
    )
    if mode is None or mode.startswith("+") == ("o" in mode):
        categorical = [c for c, dtype in table.obs.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)]
        groups = table.obs[categorical].drop(columns=[attrs[TableModel.REGION_KEY_KEY]], errors="ignore")
        write_cell_categories(str(path), ad.AnnData(obs=groups.set_axis(explorer_ids)))
    logger.info("Xenium Explorer experiment written to %s (%d cells).", path, table.n_obs)
    return path


def _cell_polygons(
    sdata: SpatialData, shapes_key: str, cell_ids: np.ndarray, explorer_ids: pd.Index
) -> gpd.GeoDataFrame:
    shapes = sdata[shapes_key]
    by_id = pd.Series(np.arange(len(shapes)), index=shapes.index.astype(str))
    missing = ~pd.Index(cell_ids.astype(str)).isin(by_id.index)
    if missing.any():
        raise KeyError(f"{int(missing.sum())} cells of the table have no polygon in {shapes_key!r}.")
    rows = by_id.loc[cell_ids.astype(str)].to_numpy()
    polygons = gpd.GeoDataFrame(geometry=shapes.geometry.to_numpy()[rows], index=explorer_ids)
    return ShapesModel.parse(polygons, transformations=get_transformation(shapes, get_all=True))


def _nucleus_polygons(
    sdata: SpatialData, nuclei_key: str, table: ad.AnnData, cells: gpd.GeoDataFrame, explorer_ids: pd.Index
) -> gpd.GeoDataFrame:
    """Each cell's nucleus polygon, in the cells' coordinates; a cell without a nucleus gets its own."""
    if "nucleus_id" not in table.obs:
        raise KeyError(
            "The table has no obs['nucleus_id']: segment with nuclei_key set (or re-aggregate with "
            "jg.tl.aggregate(..., nuclei_key=...)), or export with nuclei_key=None."
        )
    nuclei = labels_to_shapes(sdata[nuclei_key]) if nuclei_key in sdata.labels else sdata[nuclei_key]
    if get_transformation(nuclei, get_all=True) != get_transformation(cells, get_all=True):
        raise ValueError(f"Nuclei {nuclei_key!r} and the cells must share their transformations to be exported.")
    nucleus_ids = table.obs["nucleus_id"].to_numpy().astype(str)
    has_nucleus = pd.Index(nucleus_ids).isin(nuclei.index.astype(str))
    geometry = cells.geometry.to_numpy().copy()
    by_id = pd.Series(nuclei.geometry.to_numpy(), index=nuclei.index.astype(str))
    geometry[has_nucleus] = by_id.loc[nucleus_ids[has_nucleus]].to_numpy()
    if (~has_nucleus).any():
        n_without = int((~has_nucleus).sum())
        logger.info("%d cells without a nucleus show their cell polygon in the nucleus layer.", n_without)
    polygons = gpd.GeoDataFrame(geometry=geometry, index=explorer_ids)
    return ShapesModel.parse(polygons, transformations=get_transformation(cells, get_all=True))
