"""Cheap per-gene spatial scores: how concentrated each gene is across cells."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from spatialdata import SpatialData

from jointseg._core.constants import TABLE_KEY, UNS_KEY
from jointseg._core.tables import raw_counts


def spatial_entropy(counts: sparse.spmatrix | np.ndarray, *, min_counts: int = 10) -> np.ndarray:
    """Normalised entropy of each gene's distribution across cells (columns of ``counts``).

    For gene ``g`` with ``n`` transcripts in cells, ``p_c = x_cg / n``; the Shannon entropy gets
    the Miller-Madow correction ``(m - 1) / (2 n)`` (``m`` cells with the gene), which removes most
    of the downward bias of sparse genes, and is divided by ``log(n_cells)``. Near 1 (it can
    exceed 1 slightly after the correction): the gene is spread over all cells like background;
    low: it is confined to a few cells (a cell-type marker, or a gene that shapes cells). Genes
    with fewer than ``min_counts`` transcripts get NaN.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[50, 10], [50, 10], [0, 10], [0, 10]])  # gene 0 in half the cells, gene 1 everywhere
    >>> spatial_entropy(x).round(2).tolist()
    [0.5, 1.03]

    """
    x = sparse.csc_matrix(counts, dtype=np.float64)
    n_cells = x.shape[0]
    totals = np.asarray(x.sum(axis=0)).ravel()
    present = np.diff(x.indptr)
    safe = np.maximum(totals, 1)
    p = x.multiply(1 / safe[None, :]).tocsc()
    p.data = -p.data * np.log(p.data)
    entropy = np.asarray(p.sum(axis=0)).ravel() + (present - 1) / (2 * safe)
    out = entropy / np.log(max(n_cells, 2))
    out[totals < min_counts] = np.nan
    return out


def gene_scores(
    sdata: SpatialData,
    *,
    table_key: str = TABLE_KEY,
    layer: str | None = "counts",
    min_counts: int = 10,
) -> None:
    """Rank genes by how strongly they are confined to some cells (spatial entropy).

    The cheap score of SegJointGene's gene prioritisation: no network, one pass over the count
    table of any segmentation. Adds to ``table.var``: ``jg_entropy``
    (:func:`spatial_entropy`, low = cell-specific) and ``jg_entropy_rank`` (1 = most specific;
    genes below ``min_counts`` rank last), and the parameters to
    ``table.uns["jointseg"]["gene_scores"]``.

    Parameters
    ----------
    sdata
        SpatialData with a count table (from :func:`jointseg.tl.aggregate` or a segmentation).
    table_key
        The table.
    layer
        Layer with raw counts (``None``: ``X``; the default falls back to ``X`` when it holds
        integer counts and there is no such layer, as in sopa's tables).
    min_counts
        Genes with fewer transcripts in cells get no score.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> jg.tl.gene_scores(sdata)
    >>> top = sdata["table"].var.sort_values("jg_entropy_rank").index[:3]
    >>> all(g.startswith("T") for g in top)
    True

    """
    if table_key not in sdata.tables:
        raise KeyError(f"No table {table_key!r} (available: {list(sdata.tables)}); segment or aggregate first.")
    table = sdata[table_key]
    if table.n_obs < 2:
        raise ValueError(f"Table {table_key!r} has {table.n_obs} cell(s); gene scores need at least 2.")
    counts = raw_counts(table, layer, table_key=table_key)
    entropy = spatial_entropy(counts, min_counts=min_counts)
    table.var["jg_entropy"] = entropy
    order = np.argsort(np.where(np.isnan(entropy), np.inf, entropy), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    table.var["jg_entropy_rank"] = rank
    table.uns.setdefault(UNS_KEY, {})["gene_scores"] = {
        "method": "spatial_entropy",
        "layer": layer,
        "min_counts": min_counts,
        "n_scored": int(np.isfinite(entropy).sum()),
    }
