import numpy as np
from scipy import sparse

from jointseg.seg.segjointgene.celltypes import leiden_types, nearest_types, type_profiles


def test_leiden_types_on_more_cells_than_scanpy_computes_exactly():
    # >= 8192 rows, as a whole slide's nuclei: scanpy's default would switch to pynndescent's
    # approximate kNN (whose 0.7 release breaks scanpy 1.11); jointseg's stays exact.
    rng = np.random.default_rng(0)
    n_per_type, n_genes = 2800, 30
    blocks = []
    for t in range(3):
        rates = np.full(n_genes, 0.2)
        rates[t * 10 : (t + 1) * 10] = 6.0
        blocks.append(rng.poisson(rates, (n_per_type, n_genes)))
    counts = sparse.csr_matrix(np.vstack(blocks).astype(np.float32))
    type_of, names = leiden_types(counts, min_counts=5, resolution=0.1, seed=0)
    assert len(type_of) == 3 * n_per_type and type_of.min() >= 1 and len(names) >= 3
    truth = np.repeat(np.arange(3), n_per_type)
    # each true type is (almost) one Leiden cluster
    for t in range(3):
        assert np.bincount(type_of[truth == t]).max() > 0.95 * n_per_type


def test_nearest_types_recover_the_profiles_types_in_their_order():
    rng = np.random.default_rng(1)
    rates = np.full((3, 30), 0.2)
    for t in range(3):
        rates[t, t * 10 : (t + 1) * 10] = 6.0
    truth = rng.integers(0, 3, 600)
    counts = sparse.csr_matrix(rng.poisson(rates[truth]).astype(np.float32))
    profiles = type_profiles(counts, truth + 1, 3)
    assert profiles.shape == (3, 30)
    # Another slide, its types in another order: each nucleus takes the type of the model's profiles.
    other = rng.integers(0, 3, 400)
    other_counts = sparse.csr_matrix(rng.poisson(rates[other]).astype(np.float32))
    np.testing.assert_array_equal(nearest_types(other_counts, profiles, min_counts=5), other + 1)


def test_nearest_types_leave_nuclei_with_few_transcripts_untyped():
    profiles = np.log1p(np.array([[100.0, 0.0], [0.0, 100.0]]))
    counts = sparse.csr_matrix(np.array([[9.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_array_equal(nearest_types(counts, profiles, min_counts=5), [1, 0])
