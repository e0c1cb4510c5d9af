import numpy as np
import pytest

import jointseg as jg
from jointseg._core.density import GAUSSIAN_FLOOR, location_map
from jointseg._core.transcripts import build_transcript_index


def test_location_map_is_max_of_gaussians(synth):
    index = build_transcript_index(synth, "transcripts", "morphology", shape=(256, 256), block_size=64)
    sigma = 1.4 / 0.2125
    got = location_map(index, (40, 90, 60, 120), sigma=sigma)
    yy, xx = np.mgrid[40:90, 60:120]
    ty, tx = np.rint(index.y), np.rint(index.x)  # transcripts snapped to pixel centres
    d2 = (yy[..., None] - ty) ** 2 + (xx[..., None] - tx) ** 2
    expected = np.exp(-d2.min(axis=-1) / (2 * sigma**2))
    expected[expected < GAUSSIAN_FLOOR] = 0
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_element_is_lazy_aligned_and_block_invariant(synth):
    jg.pp.rna_density(synth, image_key="morphology", points_key="transcripts", block_size=64)
    jg.pp.rna_density(synth, image_key="morphology", points_key="transcripts", block_size=1024, key_added="one")
    small, big = synth["rna_density"], synth["one"]
    assert small.dims == ("c", "y", "x") and small.shape == (1, 256, 256)
    assert small.data.chunksize == (1, 64, 64)
    np.testing.assert_allclose(small.values, big.values)
    assert 0 <= small.values.min() and small.values.max() == 1


def test_per_gene_channels_conserve_counts(synth):
    jg.pp.rna_density(synth, image_key="morphology", points_key="transcripts", per_gene=True,
                      genes=["T0_0", "noise_1"], block_size=100)  # fmt: skip
    dens = synth["rna_density"]
    assert list(dens.coords["c"].values) == ["T0_0", "noise_1"]
    df = synth["transcripts"].compute()
    counts = df["feature_name"].value_counts()
    # blur preserves mass away from the image border; allow the little that leaks out of the image
    np.testing.assert_allclose(dens.values.sum(axis=(1, 2)), [counts["T0_0"], counts["noise_1"]], rtol=0.05)


def test_unknown_gene(synth):
    with pytest.raises(KeyError, match="Genes not in points"):
        jg.pp.rna_density(synth, image_key="morphology", points_key="transcripts", per_gene=True, genes=["XYZ"])
