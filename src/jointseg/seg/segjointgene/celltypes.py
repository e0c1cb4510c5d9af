"""Initial cell types of nuclei: Leiden clusters of nucleus-level transcript counts (scanpy)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
from scipy import sparse

from jointseg.tl._leiden import leiden_clusters

logger = logging.getLogger("jointseg")


def leiden_types(
    counts: sparse.csr_matrix, *, min_counts: int, resolution: float, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Leiden clusters of the rows of ``counts`` with at least ``min_counts`` transcripts.

    Clusters as :func:`jointseg.tl._leiden.leiden_clusters` (up to 30 principal components).
    Returns the type of every row as ``1..n_types`` (0: too few counts) and the type names (the
    Leiden cluster names).
    """
    totals = np.asarray(counts.sum(axis=1)).ravel()
    rows = np.flatnonzero(totals >= min_counts)
    type_of = np.zeros(counts.shape[0], np.int64)
    if len(rows) < 3:
        raise ValueError(
            f"Only {len(rows)} nuclei have >= {min_counts} transcripts: too few to find cell types. Check that the "
            "nuclei and the transcripts overlap, or lower min_nucleus_counts."
        )
    adata = ad.AnnData(counts[rows].astype(np.float32))
    leiden_clusters(adata, max_comps=30, resolution=resolution, seed=seed)
    names = list(adata.obs["leiden"].cat.categories)
    type_of[rows] = adata.obs["leiden"].cat.codes.to_numpy() + 1
    logger.info("SegJointGene: %d nuclei typed into %d Leiden clusters.", len(rows), len(names))
    return type_of, names


def _log_normalised(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows scaled to 10,000 transcripts, then log1p (still sparse: log1p(0) = 0)."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return (sparse.diags(1e4 / np.maximum(totals, 1)) @ counts).tocsr().log1p()


def type_profiles(counts: sparse.csr_matrix, type_of: np.ndarray, n_types: int) -> np.ndarray:
    """``(n_types, genes)``: the mean log-normalised profile of the nuclei of each type.

    Stored with a trained model, they type the nuclei of another slide (:func:`nearest_types`) in the
    model's own classes: Leiden on another slide numbers its clusters in its own order.
    """
    typed = np.flatnonzero(type_of > 0)
    members = sparse.csr_matrix(
        (np.ones(len(typed)), (type_of[typed] - 1, np.arange(len(typed)))), shape=(n_types, len(typed))
    )
    sums = np.asarray((members @ _log_normalised(counts[typed])).todense())
    return sums / np.maximum(np.bincount(type_of[typed] - 1, minlength=n_types), 1)[:, None]


def nearest_types(counts: sparse.csr_matrix, profiles: np.ndarray, *, min_counts: int) -> np.ndarray:
    """Type ``1..n_types`` of every row of ``counts``: the profile it correlates with best (Pearson,
    log-normalised); 0 for rows with fewer than ``min_counts`` transcripts.

    The profiles are centred and scaled once; a row's own centring and scale do not change which
    profile it correlates with best (the centred profiles sum to 0), so rows stay sparse.

    Examples
    --------
    >>> profiles = np.log1p(np.array([[9e3, 1e3, 0.0], [0.0, 1e3, 9e3]]))
    >>> nearest_types(sparse.csr_matrix(np.array([[8, 1, 0], [0, 2, 7], [1, 0, 0]])), profiles, min_counts=3)
    array([1, 2, 0])

    """
    totals = np.asarray(counts.sum(axis=1)).ravel()
    out = np.zeros(counts.shape[0], np.int64)
    rows = np.flatnonzero(totals >= min_counts)
    centred = profiles - profiles.mean(axis=1, keepdims=True)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    out[rows] = np.asarray(_log_normalised(counts[rows]) @ centred.T).argmax(axis=1) + 1
    return out
