import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

import jointseg as jg
from jointseg._core.transcripts import build_transcript_index
from jointseg.models import BinnedCounts, GeneEncoder, bin_transcripts
from jointseg.models._gene_encoder import gaussian_kernel


def _random_counts(rng, n_genes=6, shape=(20, 24), n=80):
    return BinnedCounts(
        rng.integers(0, n_genes, n), rng.integers(0, shape[0], n), rng.integers(0, shape[1], n),
        np.ones(n, np.float32), shape,
    )  # fmt: skip


def test_encoder_equals_1x1_conv_of_dense_blurred_channels():
    rng = np.random.default_rng(0)
    counts = _random_counts(rng)
    enc = GeneEncoder(6, 4, sigma=1.5)
    with torch.no_grad():
        enc.bias.copy_(torch.arange(4.0))
        sparse = enc([counts])[0].numpy()
    kernel = gaussian_kernel(1.5)
    dense = counts.dense(6)
    blurred = ndi.correlate1d(ndi.correlate1d(dense, kernel, axis=1, mode="constant"), kernel, axis=2, mode="constant")
    expected = np.einsum("gc,ghw->chw", enc.weight.detach().numpy(), blurred) + np.arange(4.0)[:, None, None]
    np.testing.assert_allclose(sparse, expected, atol=1e-5)


def test_single_transcript_gives_one_at_its_bin():
    enc = GeneEncoder(1, 1, sigma=2.0)
    with torch.no_grad():
        enc.weight.fill_(1.0)
    one = BinnedCounts(np.array([0]), np.array([5]), np.array([7]), np.array([1.0], np.float32), (12, 12))
    out = enc([one])[0, 0].detach().numpy()
    assert out[5, 7] == pytest.approx(1.0) and out.max() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_transformed_matches_numpy_rotation(k, flip):
    counts = _random_counts(np.random.default_rng(k))
    expected = np.rot90(counts.dense(6), k, axes=(1, 2))
    if flip:
        expected = expected[:, :, ::-1]
    np.testing.assert_array_equal(counts.transformed(k, flip).dense(6), expected)


def test_crop_keeps_the_window():
    counts = _random_counts(np.random.default_rng(1))
    np.testing.assert_array_equal(counts.crop(3, 15, 4, 20).dense(6), counts.dense(6)[:, 3:15, 4:20])


def test_bin_transcripts_matches_brute_force():
    sdata = jg.datasets.synthetic(shape=(128, 160), n_cells=8, seed=1)
    index = build_transcript_index(sdata, "transcripts", "morphology", shape=(128, 160), block_size=64)
    lut = np.arange(index.n_genes)
    lut[::3] = -1  # some genes left out
    window = (2, 30, -3, 25)  # bins, partly outside the image
    counts = bin_transcripts(index, window, bin_size=5, gene_lut=lut)
    expected = np.zeros((index.n_genes, 28, 28), np.float32)
    for y, x, g in zip(np.rint(index.y).astype(int), np.rint(index.x).astype(int), index.gene, strict=True):
        by, bx = y // 5 - 2, x // 5 + 3
        if g >= 0 and lut[g] >= 0 and 0 <= by < 28 and 0 <= bx < 28:
            expected[lut[g], by, bx] += 1
    np.testing.assert_array_equal(counts.dense(index.n_genes), expected)
