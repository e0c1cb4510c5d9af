import numpy as np
import pytest
from scipy import sparse

from jointseg._core.expression_model import fit_expression_model


def _model(**kw):
    rng = np.random.default_rng(0)
    # 60 cells of two types: type A expresses genes 0-2, type B genes 3-5.
    kinds = np.repeat([0, 1], 30)
    cell = np.stack(
        [
            rng.multinomial(100, [0.3, 0.3, 0.3, 0.03, 0.03, 0.04] if k == 0 else [0.03, 0.03, 0.04, 0.3, 0.3, 0.3])
            for k in kinds
        ]
    )
    core = np.stack([rng.multinomial(20, row / row.sum()) for row in cell])
    model = fit_expression_model(
        np.arange(1, 61), sparse.csr_matrix(core), sparse.csr_matrix(cell), np.full(60, 50.0),
        np.array([10, 10, 10, 10, 10, 10]), 200.0, **{"n_types": 2, **kw},
    )  # fmt: skip
    return model, kinds


def test_types_and_profiles_follow_the_expression():
    model, kinds = _model()
    assert len(set(zip(model.cell_type, kinds, strict=True))) == 2  # two types, each one kind
    lp = model.block_log_profiles(np.array([1, 60]), np.array([0, 3]))
    assert lp.shape == (3, 2)
    assert lp[1, 0] > lp[1, 1] and lp[2, 1] > lp[2, 0]  # cell 1 (kind A) explains gene 0; cell 60 gene 3
    np.testing.assert_allclose(np.exp(lp[0]), 1 / 6, rtol=1e-6)  # flat background


def test_rates_and_unknown_cells():
    model, _ = _model()
    np.testing.assert_allclose(model.rate_per_um2, 101 / 51)
    assert model.background_rate_per_um2 == pytest.approx(60 / 200)
    rates = model.block_rates(np.array([1, 999]), bin_area_um2=2.0)
    np.testing.assert_allclose(rates, [0.6, 2 * 101 / 51, 2 * 101 / 51])
    lp = model.block_log_profiles(np.array([999]), np.array([0, 3]))
    assert np.isfinite(lp).all()


def test_shrinkage_and_ambient():
    lonely, _ = _model(prior_counts=0.0, ambient=0.01)
    shrunk, _ = _model(prior_counts=1000.0, ambient=0.01)
    a, b = (m.block_log_profiles(np.array([1]), np.arange(6))[1] for m in (lonely, shrunk))
    type_profile = np.log(0.99 * shrunk.type_profiles[shrunk.cell_type[0]] + 0.01 / 6)
    assert np.abs(b - type_profile).max() < np.abs(a - type_profile).max()


def test_small_slides_get_fewer_types():
    model, _ = _model(n_types=15)
    assert model.n_types == 2  # 60 cells: at most 60 // 25 types


def test_unsorted_ids_refused():
    with pytest.raises(ValueError, match="sorted"):
        fit_expression_model(np.array([2, 1]), sparse.csr_matrix((2, 3)), sparse.csr_matrix((2, 3)), np.ones(2),
                             np.ones(3), 1.0)  # fmt: skip


def test_gene_weights_scale_each_genes_evidence():
    plain, _ = _model()
    weighted, _ = _model(gene_weights=np.array([0.0, 1.0, 2.0, 1.0, 1.0, 1.0]))
    ids, genes = np.array([1, 60]), np.arange(6)
    a, b = plain.block_log_profiles(ids, genes), weighted.block_log_profiles(ids, genes)
    np.testing.assert_array_equal(b[:, 0], 0.0)  # gene 0 no longer tells the cells apart
    np.testing.assert_allclose(b[:, 2], 2 * a[:, 2])
    np.testing.assert_allclose(b[:, 1:2], a[:, 1:2])
    # Only the genes of the block are weighted, each by its own weight.
    np.testing.assert_allclose(weighted.block_log_profiles(ids, np.array([2]))[:, 0], 2 * a[:, 2])


@pytest.mark.parametrize("weights", [np.ones(5), np.array([1.0, -1, 1, 1, 1, 1]), np.array([1.0, np.nan, 1, 1, 1, 1])])
def test_bad_gene_weights_refused(weights):
    with pytest.raises(ValueError, match="gene_weights"):
        _model(gene_weights=weights)
