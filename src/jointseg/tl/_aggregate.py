"""The public transcripts -> cells aggregation (the kernels are in :mod:`jointseg._core.aggregation`)."""

from __future__ import annotations

from spatialdata import SpatialData, deepcopy

from jointseg._core.aggregation import aggregate_indexed, check_cell_id_column
from jointseg._core.constants import CELL_LABELS_KEY, DEFAULT_CS, POINTS_CELL_ID, TABLE_KEY
from jointseg._core.transcripts import build_transcript_index
from jointseg._core.utils import check_new_key, labels_2d, resolve_key


def aggregate(
    sdata: SpatialData,
    *,
    labels_key: str = CELL_LABELS_KEY,
    points_key: str | None = None,
    nuclei_key: str | None = None,
    table_key: str = TABLE_KEY,
    points_cell_id_key: str = POINTS_CELL_ID,
    block_size: int = 2048,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Count transcripts per cell into a table and write each transcript's cell id to the points.

    Each transcript is mapped into the labels' pixel grid through both elements' transformations
    and takes the label of the pixel it falls in (pixel centres at integer coordinates, so the
    nearest pixel; this matches the polygons of :func:`jointseg.seg.labels_to_shapes`). The work
    runs per block of the labels, vectorised, with no loop over transcripts.

    Parameters
    ----------
    sdata
        SpatialData with the labels and the transcripts.
    labels_key
        Cell labels to count into.
    points_key
        Transcripts (``feature_key`` gives the gene column); may be omitted if there is only one.
    nuclei_key
        Optional nuclei labels: ``obs["nucleus_id"]`` is the nucleus covering most of each cell
        (0 = none) and ``obs["nucleus_area"]`` its overlap in pixels.
    table_key
        Name of the new table.
    points_cell_id_key
        Column added to the points with each transcript's cell id (0 = unassigned). The points are
        replaced by a lazy copy with that column; all other columns are kept.
    block_size
        Block edge in pixels.
    coordinate_system
        Coordinate system that links the labels and the points.
    overwrite
        Replace an existing table ``table_key`` or points column ``points_cell_id_key``.
    copy
        Return a new SpatialData instead of modifying ``sdata``.

    Returns
    -------
    None, or the new SpatialData if ``copy``. The table has sparse int32 counts in ``X`` and
    ``layers["counts"]`` (genes matching vendor control patterns excluded), one row per label in
    increasing id order, ``obs`` columns ``cell_id`` (= label value), ``region`` (= ``labels_key``),
    ``area`` (pixels), ``area_um2``, ``n_transcripts``, ``n_genes``, and ``obsm["spatial"]`` the
    centroids in ``coordinate_system``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts", table_key="counts")
    >>> sdata["counts"].n_obs
    5

    """
    if copy:
        sdata = deepcopy(sdata)
    labels_key = resolve_key(sdata, "labels", labels_key)
    points_key = resolve_key(sdata, "points", points_key)
    check_new_key(sdata, table_key, overwrite=overwrite)
    check_cell_id_column(sdata, points_key, points_cell_id_key, overwrite=overwrite)
    labels = labels_2d(sdata, labels_key)
    index = build_transcript_index(
        sdata,
        points_key,
        labels_key,
        shape=tuple(int(s) for s in labels.shape),
        block_size=block_size,
        coordinate_system=coordinate_system,
    )
    aggregate_indexed(
        sdata,
        index,
        labels_key=labels_key,
        points_key=points_key,
        nuclei_key=nuclei_key,
        table_key=table_key,
        points_cell_id_key=points_cell_id_key,
        coordinate_system=coordinate_system,
    )
    return sdata if copy else None
