"""Leiden clusters of count profiles, the way every jointseg step clusters (scanpy)."""

from __future__ import annotations

import anndata as ad
import scanpy as sc


def leiden_clusters(adata: ad.AnnData, *, max_comps: int, resolution: float, seed: int) -> None:
    """Cluster the rows of raw counts in place: ``adata.obs["leiden"]``.

    Normalise to the median total, log1p, PCA (up to ``max_comps`` components), 15-neighbour kNN
    graph, Leiden (igraph flavour, 2 iterations).

    The neighbours are exact (scikit-learn's brute-force search, which scanpy itself uses below 8,192
    rows): scanpy's default above that, pynndescent, is approximate and compiles numba code that
    stays resident (measured: +0.37 GB and 26 s on 30,000 nuclei, against +0.16 GB and 9 s exact).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> adata = ad.AnnData(rng.poisson(5, (60, 8)).astype(np.float32))
    >>> leiden_clusters(adata, max_comps=5, resolution=0.5, seed=0)
    >>> adata.obs["leiden"].dtype.name
    'category'

    """
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    n_neighbors = min(15, adata.n_obs - 1)
    n_comps = int(min(max_comps, adata.n_obs - 1, adata.n_vars - 1))
    if n_comps >= 2:
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, transformer="sklearn", random_state=seed)
    else:
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X", transformer="sklearn", random_state=seed)
    sc.tl.leiden(adata, resolution=resolution, flavor="igraph", n_iterations=2, random_state=seed, directed=False)
