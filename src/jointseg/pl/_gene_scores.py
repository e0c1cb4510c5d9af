"""Gene-score figure: the top genes of each cell type by SegJointGene's CID score."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from spatialdata import SpatialData

from jointseg._core.constants import CELL_LABELS_KEY, TABLE_KEY, UNS_KEY


def gene_scores(
    sdata: SpatialData,
    *,
    table_key: str = TABLE_KEY,
    labels_key: str = CELL_LABELS_KEY,
    n_genes: int = 5,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of the ``n_genes`` best genes of every cell type by CID score, across all types.

    Rows are genes (grouped by the type that ranks them highest), columns the cell types; colour
    is the CID score (NaN: not measured, blank). Without CID scores (a method other than
    :func:`jointseg.seg.segjointgene`), the genes with the lowest spatial entropy
    (:func:`jointseg.tl.gene_scores`) are shown as bars instead.

    Parameters
    ----------
    sdata
        SpatialData with the table.
    table_key, labels_key
        The table and the segmentation whose parameters name the cell types.
    n_genes
        Genes per type.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    The axes.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> jg.tl.gene_scores(sdata)
    >>> ax = jg.pl.gene_scores(sdata)

    """
    if table_key not in sdata.tables:
        raise KeyError(f"No table {table_key!r} (available: {list(sdata.tables)}).")
    table = sdata[table_key]
    if "jg_cid_by_type" not in table.varm:
        if "jg_entropy" not in table.var:
            raise KeyError(
                f"Table {table_key!r} has no gene scores: run jg.seg.segjointgene or jg.tl.gene_scores(sdata) first."
            )
        top = table.var["jg_entropy"].dropna().sort_values().iloc[: n_genes * 4]
        if ax is None:
            _, ax = plt.subplots(figsize=(4, 0.25 * len(top) + 1))
        ax.barh(top.index[::-1], top.to_numpy()[::-1], color="tab:blue")
        ax.set_xlabel("spatial entropy (low = cell-specific)")
        return ax
    types = list(table.uns[UNS_KEY][labels_key]["cid_types"])
    scores = np.asarray(table.varm["jg_cid_by_type"], dtype=float)
    rows: list[int] = []
    for t in range(len(types)):
        order = np.argsort(np.where(np.isnan(scores[:, t]), -np.inf, scores[:, t]))[::-1]
        rows += [int(g) for g in order[:n_genes] if int(g) not in rows and np.isfinite(scores[g, t])]
    matrix = scores[rows]
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * len(types) + 2.5, 0.22 * len(rows) + 1.2))
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(types)), types)
    ax.set_yticks(range(len(rows)), table.var_names[rows], fontsize=7)
    ax.set_xlabel("cell type")
    ax.figure.colorbar(image, ax=ax, label="CID score")
    ax.set_title(f"Top {n_genes} genes per cell type (CID)")
    return ax
