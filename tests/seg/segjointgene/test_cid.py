import numpy as np
import pytest
import torch

from jointseg.models import BinnedCounts, SemanticConfig, SemanticUNet
from jointseg.seg.segjointgene.cid import SCORE_SCALE, CIDParams, _sensitivity, cid_tile


@pytest.fixture
def network():
    torch.manual_seed(0)
    net = SemanticUNet(SemanticConfig(n_genes=3, n_types=2, widths=(8, 16)))
    with torch.no_grad():
        net.encoder.weight[0] = 1.0  # gene 0 drives the logits
        net.encoder.weight[1] = 0.0  # gene 1 cannot move them
    return net.eval()


def _counts(rng, genes, shape=(32, 32), n=150):
    return BinnedCounts(
        rng.choice(genes, n), rng.integers(0, shape[0], n), rng.integers(0, shape[1], n), np.ones(n, np.float32),
        shape,
    )  # fmt: skip


@pytest.mark.parametrize("estimator", ["expected", "sampled"])
def test_informative_gene_scores_higher_than_a_disconnected_one(network, estimator):
    counts = _counts(np.random.default_rng(0), [0, 1])
    params = CIDParams(steps=20, estimator=estimator)
    scores, support = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=params)
    assert scores.shape == support.shape == (2, 2)
    assert (scores[:, 0] > scores[:, 1] + 1).all()
    # A disconnected gene never distorts the logits: only the entropy term acts, its sigma grows
    # at every step and never stops, the same for both types.
    assert scores[0, 1] == pytest.approx(scores[1, 1])
    assert scores[0, 1] < -SCORE_SCALE * (params.init_log_sigma + 0.5 * params.steps * params.lr)


def test_absent_gene_gets_no_score(network):
    counts = _counts(np.random.default_rng(1), [0])
    scores, support = cid_tile(network, counts, np.array([0, 2]), np.array([1]), params=CIDParams(steps=3))
    assert np.isfinite(scores[0, 0]) and np.isnan(scores[0, 1])
    assert support[0, 1] == 0


@pytest.mark.parametrize("estimator", ["expected", "sampled"])
def test_same_seed_same_scores(network, estimator):
    counts = _counts(np.random.default_rng(2), [0, 1])
    params = CIDParams(steps=4, estimator=estimator)
    a = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=params, seed=3)[0]
    b = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=params, seed=3)[0]
    np.testing.assert_array_equal(a, b)


@pytest.fixture
def graded_network():
    """Four genes whose input weights scale one direction by 1, 1/2, 1/4 and 0."""
    torch.manual_seed(1)
    net = SemanticUNet(SemanticConfig(n_genes=4, n_types=2, widths=(8, 16)))
    with torch.no_grad():
        direction = torch.randn(net.encoder.weight.shape[1])
        net.encoder.weight[:] = torch.tensor([1.0, 0.5, 0.25, 0.0])[:, None] * direction
    return net.eval()


def test_sensitivity_predicts_the_sampled_distortion(graded_network):
    """Sum of sigma**2 * sensitivity equals the Monte-Carlo MSE of the logits at small noise."""
    net = graded_network
    counts = _counts(np.random.default_rng(3), [0, 1, 2, 3], shape=(16, 16), n=60)
    params = CIDParams(probes=512)
    with torch.no_grad():
        embedding = net.encoder([counts])
        clean = net.trunk(embedding)[0, 1]
    weights = net.encoder.weight.detach()
    sensitivity = _sensitivity(net, embedding, weights, torch.tensor([1]), params, torch.Generator().manual_seed(0))
    sigma = 0.05
    predicted = sigma**2 * sensitivity[0].sum(dim=(1, 2))
    torch.manual_seed(0)
    with torch.no_grad():
        eps = torch.randn(400, 1, 16, 16)
        sampled = torch.stack([
            ((net.trunk(embedding + weights[g, :, None, None] * sigma * eps)[:, 1] - clean) ** 2).mean()
            for g in range(4)
        ])  # fmt: skip
    np.testing.assert_allclose(predicted[:3].numpy(), sampled[:3].numpy(), rtol=0.15)
    # A gene of weight 0 moves nothing: exactly for the estimate; for the samples, up to the rounding
    # of a batched convolution against an unbatched one.
    assert predicted[3] == 0 and sampled[3] < 1e-6 * sampled[2]
    # Sensitivity is quadratic in the gene's weight: halving it quarters the distortion.
    np.testing.assert_allclose((predicted[:2] / predicted[1:3]).numpy(), [4, 4], rtol=1e-4)


def test_expected_and_sampled_rank_genes_alike(graded_network):
    counts = _counts(np.random.default_rng(4), [0, 1, 2, 3])
    genes, types = np.arange(4), np.array([1, 2])
    expected = cid_tile(graded_network, counts, genes, types, params=CIDParams(estimator="expected"))[0]
    # Many noise samples per step, so that the sampled scores' own noise stays below the tolerance.
    sampled = cid_tile(graded_network, counts, genes, types, params=CIDParams(estimator="sampled", samples=32))[0]
    for scores in (expected, sampled):
        assert (np.diff(scores, axis=1) < 0).all()  # weight 1 > 1/2 > 1/4 > 0
    # Pairs stop on the first step whose (noisy) distortion crosses the threshold: within two steps.
    np.testing.assert_allclose(expected, sampled, atol=2 * SCORE_SCALE * CIDParams().lr)


def test_expected_estimator_passes_do_not_grow_with_genes(monkeypatch):
    torch.manual_seed(0)
    net = SemanticUNet(SemanticConfig(n_genes=400, n_types=3, widths=(8, 16))).eval()
    trunk = net.trunk
    passes = []

    def counting_trunk(embedding):
        passes.append(len(embedding))
        return trunk(embedding)

    monkeypatch.setattr(net, "trunk", counting_trunk)
    counts = _counts(np.random.default_rng(5), np.arange(400), n=1000)
    for n_genes in (10, 400):
        passes.clear()
        cid_tile(net, counts, np.arange(n_genes), np.array([1, 2, 3]), params=CIDParams(probes=8))
        assert passes == [8, 8, 8]  # one batch of probes per type
