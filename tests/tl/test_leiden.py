import anndata as ad
import numpy as np
from sklearn.neighbors import NearestNeighbors

from jointseg.tl._leiden import leiden_clusters


def test_neighbours_are_exact_beyond_scanpys_brute_force_size():
    # 9,000 rows: scanpy's default kNN would be pynndescent's approximate one
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.poisson(3, (9000, 20)).astype(np.float32))
    leiden_clusters(adata, max_comps=10, resolution=0.5, seed=0)
    assert adata.obs["leiden"].nunique() >= 1
    # 20 genes (< 50): scanpy builds the graph on X, not on the principal components
    exact, _ = NearestNeighbors(n_neighbors=15).fit(adata.X).kneighbors(adata.X)
    graph = adata.obsp["distances"]
    assert (np.diff(graph.indptr) == 14).all()
    found = np.sort(graph.data.reshape(-1, 14), axis=1)
    np.testing.assert_allclose(found, exact[:, 1:], atol=1e-5)


def test_single_component_data_clusters_on_the_counts():
    adata = ad.AnnData(np.repeat([[1.0, 9.0], [9.0, 1.0]], 20, axis=0).astype(np.float32))
    leiden_clusters(adata, max_comps=30, resolution=0.5, seed=0)
    assert "X_pca" not in adata.obsm
    assert adata.obs["leiden"].iloc[0] != adata.obs["leiden"].iloc[-1]
