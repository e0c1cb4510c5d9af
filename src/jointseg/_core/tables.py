"""Reading count tables made by jointseg, sopa, vendors' readers or the user."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
from scipy import sparse

logger = logging.getLogger("jointseg")

#: The layer jointseg writes raw counts to and reads them from by default.
COUNTS_LAYER = "counts"


def _holds_counts(matrix) -> bool:
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix).ravel()
    sample = np.asarray(values[:100_000], dtype=np.float64)
    return bool(np.all(sample >= 0) and np.all(sample == np.round(sample)))


def raw_counts(table: ad.AnnData, layer: str | None, *, table_key: str = "table"):
    """The raw count matrix of ``table``: ``layers[layer]``, or ``X`` when ``layer`` is None.

    jointseg's tables keep counts in ``layers["counts"]``; tables from sopa's ``aggregate`` and
    spatialdata-io's readers keep them in ``X`` only. So the default ``"counts"``, when that layer
    is missing, falls back to ``X`` if ``X`` holds non-negative integers (and says so in the log).

    Raises
    ------
    KeyError
        If ``layer`` is missing (and is not the default with integer counts in ``X``).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> raw_counts(ad.AnnData(np.array([[1.0, 0.0], [2.0, 3.0]])), "counts").sum()
    np.float64(6.0)

    """
    if layer is None:
        return table.X
    if layer in table.layers:
        return table.layers[layer]
    if layer == COUNTS_LAYER and table.X is not None and _holds_counts(table.X):
        logger.info("Table %r has no layer %r; using its X, which holds integer counts.", table_key, layer)
        return table.X
    raise KeyError(
        f"Table {table_key!r} has no layer {layer!r} (layers: {list(table.layers)}); pass layer=None to use its X."
    )
