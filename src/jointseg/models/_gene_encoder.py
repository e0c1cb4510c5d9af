"""Per-gene input channels, held sparse: transcripts binned on a coarse grid, and a network layer
that applies a 1x1 convolution to the blurred per-gene channels without ever materialising them.

A panel of ``G`` genes gives ``G`` input channels; dense, a batch of crops costs
``G x batch x crop**2`` floats (5,000 genes at batch 8 on 64 x 64 bins: 650 MB). Binned transcripts are
sparse (a few per bin), and the first layer is linear, so ``W @ blur(counts) = blur(W @ counts)``:
:class:`GeneEncoder` scatters each non-empty bin's ``W[:, gene] * count`` into a ``C``-channel map
and blurs that. Memory is ``O(non-empty bins x C)``, whatever the panel size, and the result equals
the 1x1 convolution of the dense channels exactly (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jointseg._core.transcripts import TranscriptIndex


@dataclass(frozen=True)
class BinnedCounts:
    """Non-empty ``(gene, y, x)`` bins of a window and their transcript counts.

    Coordinates are in bins relative to the window's corner; ``shape`` is the window's size.
    """

    gene: np.ndarray
    y: np.ndarray
    x: np.ndarray
    count: np.ndarray
    shape: tuple[int, int]

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> BinnedCounts:
        """The bins inside ``[y0, y1) x [x0, x1)``, in the crop's coordinates."""
        keep = (self.y >= y0) & (self.y < y1) & (self.x >= x0) & (self.x < x1)
        return BinnedCounts(self.gene[keep], self.y[keep] - y0, self.x[keep] - x0, self.count[keep], (y1 - y0, x1 - x0))

    def transformed(self, k: int, flip: bool) -> BinnedCounts:
        """Rotated by ``k`` quarter turns like ``np.rot90(a, k)``, then flipped left-right if ``flip``."""
        h, w = self.shape
        y, x = self.y, self.x
        for _ in range(k % 4):  # np.rot90 once: new[i, j] = old[j, w - 1 - i]
            y, x, h, w = w - 1 - x, y, w, h
        if flip:
            x = w - 1 - x
        return BinnedCounts(self.gene, y, x, self.count, (h, w))

    def dense(self, n_genes: int) -> np.ndarray:
        """Counts as a dense ``(n_genes, h, w)`` array (for tests and small windows)."""
        out = np.zeros((n_genes, *self.shape), np.float32)
        np.add.at(out, (self.gene, self.y, self.x), self.count)
        return out


def bin_transcripts(
    index: TranscriptIndex, window: tuple[int, int, int, int], *, bin_size: int, gene_lut: np.ndarray
) -> BinnedCounts:
    """Bin the transcripts of a window of the coarse grid (``bin_size`` image pixels per bin).

    ``window = (y0, y1, x0, x1)`` is in bins; bins may extend beyond the image (they are empty).
    ``gene_lut`` maps the index's gene codes to channel numbers, -1 for genes left out.
    """
    y0, y1, x0, x1 = window
    h, w = index.shape
    sel = index.window(max(y0 * bin_size, 0), min(y1 * bin_size, h), max(x0 * bin_size, 0), min(x1 * bin_size, w))
    codes = index.gene[sel]
    channel = np.where(codes >= 0, gene_lut[np.maximum(codes, 0)], -1)
    keep = channel >= 0
    by = np.rint(index.y[sel][keep]).astype(np.int64) // bin_size - y0
    bx = np.rint(index.x[sel][keep]).astype(np.int64) // bin_size - x0
    ny, nx = y1 - y0, x1 - x0
    key = (channel[keep].astype(np.int64) * ny + by) * nx + bx
    uniq, counts = np.unique(key, return_counts=True)
    gene, rest = np.divmod(uniq, ny * nx)
    yy, xx = np.divmod(rest, nx)
    return BinnedCounts(gene, yy, xx, counts.astype(np.float32), (ny, nx))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Unnormalised 1D Gaussian (peak 1) truncated at 4 sigma: a single transcript gives 1 at its bin."""
    reach = max(int(np.ceil(4 * sigma)), 1)
    t = np.arange(-reach, reach + 1, dtype=np.float64)
    return np.exp(-(t**2) / (2 * sigma**2)).astype(np.float32)


class GeneEncoder(nn.Module):
    """First layer of SegJointGene's network: a 1x1 convolution over the blurred per-gene channels.

    Parameters
    ----------
    n_genes
        Input channels (genes).
    channels
        Output channels.
    sigma
        Gaussian width of the gene channels in bins (peak-normalised, so one isolated transcript
        gives 1 at its bin).

    Examples
    --------
    >>> import numpy as np
    >>> enc = GeneEncoder(3, 4, sigma=1.0)
    >>> counts = BinnedCounts(np.array([2]), np.array([5]), np.array([5]), np.array([1.0], np.float32), (16, 16))
    >>> enc([counts]).shape
    torch.Size([1, 4, 16, 16])

    """

    def __init__(self, n_genes: int, channels: int, *, sigma: float):
        super().__init__()
        # Small initial weights: a gene the network never learns to use keeps a near-zero weight, so
        # noise in its channel cannot move the logits (CID then ranks it last).
        self.weight = nn.Parameter(0.01 * torch.randn(n_genes, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("kernel", torch.from_numpy(gaussian_kernel(sigma)))

    @property
    def reach(self) -> int:
        """Bins a transcript's blur reaches."""
        return len(self.kernel) // 2

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of every channel of ``(N, C, h, w)``, zero outside."""
        c = x.shape[1]
        k = self.kernel.to(x.dtype)
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(self.reach, 0), groups=c)
        return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, self.reach), groups=c)

    def scatter(self, batch: list[BinnedCounts], weight: torch.Tensor) -> torch.Tensor:
        """``weight[gene]`` summed per bin, unblurred: ``(N, weight.shape[1], h, w)``.

        A sparse ``(bins, genes)`` count matrix times ``weight``: unlike a gather-and-``index_add_``,
        its gradient is deterministic on the CPU, so training with a seed is reproducible.
        """
        h, w = batch[0].shape
        device = weight.device
        gene = np.concatenate([b.gene for b in batch])
        flat = np.concatenate([(i * h + b.y) * w + b.x for i, b in enumerate(batch)])
        count = np.concatenate([b.count for b in batch])
        matrix = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([flat, gene]).astype(np.int64)),
            torch.from_numpy(count.astype(np.float32)).to(weight.dtype),
            (len(batch) * h * w, weight.shape[0]),
            check_invariants=False,
        ).to(device)
        out = torch.sparse.mm(matrix.coalesce(), weight)
        return out.view(len(batch), h, w, -1).permute(0, 3, 1, 2)

    def forward(self, batch: list[BinnedCounts]) -> torch.Tensor:
        """Embedding ``(N, channels, h, w)`` of a batch of equally sized windows."""
        return self.blur(self.scatter(batch, self.weight)) + self.bias.view(1, -1, 1, 1)
