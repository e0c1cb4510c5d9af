"""Gene channels of the networks that see gene identity: which genes, and how transcripts map to channels and bins."""

from __future__ import annotations

import numpy as np

from jointseg._core.transcripts import TranscriptIndex


def select_genes(index: TranscriptIndex, min_counts: int) -> tuple[np.ndarray, np.ndarray]:
    """Gene codes with at least ``min_counts`` transcripts (controls excluded), and the lookup from
    the index's gene codes to channel numbers (-1: left out).
    """
    totals = np.bincount(index.gene[index.gene >= 0], minlength=index.n_genes)
    codes = np.flatnonzero((totals >= min_counts) & ~index.excluded)
    if len(codes) == 0:
        raise ValueError(
            f"No gene has >= {min_counts} transcripts (most: {int(totals.max(initial=0))}); lower min_gene_counts."
        )
    lut = np.full(index.n_genes, -1, np.int64)
    lut[codes] = np.arange(len(codes))
    return codes, lut


def gene_lookup(index: TranscriptIndex, genes: list[str]) -> np.ndarray:
    """Lookup from the index's gene codes to the channel of each of ``genes`` (-1: not a channel)."""
    codes = {g: i for i, g in enumerate(index.genes.astype(str))}
    missing = [g for g in genes if g not in codes]
    if missing:
        raise ValueError(f"The model's genes are missing from the points: {missing[:10]}.")
    lut = np.full(index.n_genes, -1, np.int64)
    lut[[codes[g] for g in genes]] = np.arange(len(genes))
    return lut


def sample_bins(labels, window: tuple[int, int, int, int], bin_size: int) -> np.ndarray:
    """Label of the pixel at the centre of each bin of a window of the coarse grid (0 beyond the image)."""
    y0, y1, x0, x1 = window
    h, w = labels.shape
    c = bin_size // 2
    part = np.asarray(labels[y0 * bin_size + c : min(y1 * bin_size, h) : bin_size,
                             x0 * bin_size + c : min(x1 * bin_size, w) : bin_size])  # fmt: skip
    out = np.zeros((y1 - y0, x1 - x0), np.int64)
    out[: part.shape[0], : part.shape[1]] = part
    return out
