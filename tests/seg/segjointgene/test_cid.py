import numpy as np
import pytest
import torch

from jointseg.models import BinnedCounts, SemanticConfig, SemanticUNet
from jointseg.seg.segjointgene.cid import SCORE_SCALE, CIDParams, cid_tile


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


def test_informative_gene_scores_higher_than_a_disconnected_one(network):
    counts = _counts(np.random.default_rng(0), [0, 1])
    params = CIDParams(steps=20)
    scores, support, maps = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=params)
    assert scores.shape == support.shape == (2, 2)
    assert maps.shape == (2, 2, 32, 32)
    assert (scores[:, 0] > scores[:, 1] + 1).all()
    # A disconnected gene never distorts the logits: only the entropy term acts, its sigma grows
    # at every step and never stops, the same for both types.
    assert scores[0, 1] == pytest.approx(scores[1, 1])
    assert scores[0, 1] < -SCORE_SCALE * (params.init_log_sigma + 0.5 * params.steps * params.lr)


def test_absent_gene_gets_no_score(network):
    counts = _counts(np.random.default_rng(1), [0])
    scores, support, _ = cid_tile(network, counts, np.array([0, 2]), np.array([1]), params=CIDParams(steps=3))
    assert np.isfinite(scores[0, 0]) and np.isnan(scores[0, 1])
    assert support[0, 1] == 0


def test_same_seed_same_scores(network):
    counts = _counts(np.random.default_rng(2), [0, 1])
    a = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=CIDParams(steps=4), seed=3)[0]
    b = cid_tile(network, counts, np.array([0, 1]), np.array([1, 2]), params=CIDParams(steps=4), seed=3)[0]
    np.testing.assert_array_equal(a, b)
