import numpy as np
import pytest
import torch

from jointseg.models import PointTransformer, SSLCSTModel, TokenBatch, TransformerConfig


def _batch(rng, b=3, t=5, n_genes=7, bins=4) -> TokenBatch:
    lengths = rng.integers(1, 4, size=bins)
    return TokenBatch(
        genes=rng.integers(0, n_genes, size=lengths.sum()),
        offsets=np.r_[0, np.cumsum(lengths)[:-1]],
        weights=rng.random(lengths.sum()).astype(np.float32) + 0.5,
        token_bin=rng.integers(-1, bins, size=(b, t)),
        position=rng.normal(size=(b, t, 2)).astype(np.float32),
        distance=rng.normal(size=(b, t)).astype(np.float32),
        valid=np.c_[np.ones((b, 1), bool), rng.random((b, t - 1)) < 0.7],
    )


@pytest.fixture
def net():
    torch.manual_seed(0)
    return PointTransformer(TransformerConfig(n_genes=7, dim=16, layers=3, dropout=0.0)).eval()


def test_expression_embedding_is_the_weighted_sum_of_gene_rows(net):
    batch = _batch(np.random.default_rng(0))
    t = batch.tensors("cpu")
    bags = net.expression(t["genes"], t["offsets"], per_sample_weights=t["weights"])
    dense = np.zeros((len(batch.offsets), 7), np.float32)
    ends = np.r_[batch.offsets[1:], len(batch.genes)]
    for i, (a, b) in enumerate(zip(batch.offsets, ends, strict=True)):
        np.add.at(dense[i], batch.genes[a:b], batch.weights[a:b])
    expected = torch.from_numpy(dense) @ net.expression.weight
    torch.testing.assert_close(bags, expected)


def test_padding_tokens_do_not_change_the_output(net):
    batch = _batch(np.random.default_rng(1))
    with torch.no_grad():
        before = net(**batch.tensors("cpu"))
        noisy = batch.tensors("cpu")
        noisy["position"][~noisy["valid"]] = 50.0
        noisy["distance"][~noisy["valid"]] = -9.0
        after = net(**noisy)
    torch.testing.assert_close(before, after)


def test_centre_only_last_layer_equals_the_full_last_layer(net):
    batch = _batch(np.random.default_rng(2))
    t = batch.tensors("cpu")
    with torch.no_grad():
        bins = net.expression(t["genes"], t["offsets"], per_sample_weights=t["weights"])
        bins = torch.cat([bins.new_zeros(1, bins.shape[1]), bins])
        x = bins[t["token_bin"] + 1] + net.position(t["position"]) + net.distance(t["distance"][..., None])
        for layer in net.layers:
            x = layer(x, t["valid"])
        full = net.head(net.norm(x[:, 0]))
        torch.testing.assert_close(net(**t), full)


def test_model_predicts_probabilities_and_round_trips(tmp_path, net):
    model = SSLCSTModel(network=net, genes=[f"g{i}" for i in range(7)], bin_size=2, pixel_size_um=0.2125,
                        n_neighbours=4, radius_bins=10.0, distance_scale_um=5.0, training_log={"steps": 3})  # fmt: skip
    batch = _batch(np.random.default_rng(3))
    fg, directions = model.predict(batch)
    assert fg.shape == (3,) and ((fg > 0) & (fg < 1)).all()
    assert directions.shape == (3, 16)
    np.testing.assert_allclose(directions.sum(1), 1.0, rtol=1e-5)
    path = tmp_path / "sslcst.pt"
    model.save(path)
    loaded = SSLCSTModel.load(path)
    assert loaded.genes == model.genes and loaded.radius_bins == 10.0 and loaded.training_log == {"steps": 3}
    np.testing.assert_allclose(loaded.predict(batch)[1], directions, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="must match"):
        SSLCSTModel.new(TransformerConfig(n_genes=3), genes=["a"], bin_size=2, pixel_size_um=1.0, n_neighbours=4,
                        radius_bins=3.0, distance_scale_um=5.0)  # fmt: skip
