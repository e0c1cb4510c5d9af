"""Initial cell types of nuclei: Leiden clusters of nucleus-level transcript counts (scanpy)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
from scipy import sparse

from jointseg._core.aggregation import assign_transcripts
from jointseg._core.transcripts import TranscriptIndex
from jointseg.tl._leiden import leiden_clusters

logger = logging.getLogger("jointseg")


def nucleus_counts(nuclei, index: TranscriptIndex, gene_lut: np.ndarray, n_genes: int) -> sparse.csr_matrix:
    """Sparse ``(max nucleus id + 1, n_genes)`` counts of the transcripts inside each nucleus.

    ``nuclei`` is a lazy label image on the index's pixel grid; ``gene_lut`` maps the index's gene
    codes to columns (-1: left out).
    """
    assigned = assign_transcripts(nuclei, index).labels
    codes = index.gene
    column = np.where(codes >= 0, gene_lut[np.maximum(codes, 0)], -1)
    keep = (assigned > 0) & (column >= 0)
    n_rows = int(assigned.max(initial=0)) + 1
    return sparse.coo_matrix(
        (np.ones(int(keep.sum()), np.float32), (assigned[keep], column[keep])), shape=(n_rows, n_genes)
    ).tocsr()


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
