"""SSL-CST's self-supervised samples: positives labelled with the direction to their nucleus's
centroid, and negatives far from every nucleus and dark.

The paper's positives are bins with transcripts inside eroded nuclei (:func:`select_samples`), so
the network learns its directions only where the distance to the nearest nucleus already gives
them, and never from the transcripts that make cells differ. Cytoplasm samples
(:func:`tied_cytoplasm`) add bins outside the nuclei: a non-empty bin becomes a positive, labelled
with the direction to a nucleus, when that nucleus's own expression explains its transcripts far better
than any other candidate does: each nucleus within its cell's reach of the bin (its radius plus
its extent estimated from the transcripts), and the background. Each nucleus's profile is the
engine's per-cell expression model (:mod:`jointseg._core.expression_model`: its nuclear counts
shrunk toward its type's), so "far better" is a log-likelihood margin in nats. A bin near two
nuclei of one type is ambiguous and gives no sample; one near a tumour cell and a fibroblast,
holding a tumour gene, is tied to the tumour cell, whichever nucleus is nearer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from jointseg._core.expression_model import ExpressionModel
from jointseg.seg.sslcst.postprocess import direction_class
from jointseg.seg.sslcst.tokens import BinTable, NucleusCentres


def erode_labels(labels: np.ndarray, radius: int) -> np.ndarray:
    """Labels eroded by a disc of ``radius`` pixels (a pixel stays if its whole disc has its label)."""
    if radius < 1:
        return labels
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = yy**2 + xx**2 <= radius**2
    same = ndi.minimum_filter(labels, footprint=disc) == ndi.maximum_filter(labels, footprint=disc)
    return np.where(same, labels, 0)


@dataclass(frozen=True)
class Samples:
    """Training bins (global bin coordinates) and their targets: ``foreground`` 1/0 and
    ``direction`` (the class towards the nucleus centroid; -1 where it is not learned).
    """

    y: np.ndarray
    x: np.ndarray
    foreground: np.ndarray
    direction: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, rows: np.ndarray) -> Samples:
        """The samples ``rows``."""
        return Samples(self.y[rows], self.x[rows], self.foreground[rows], self.direction[rows])

    @classmethod
    def empty(cls) -> Samples:
        """No samples."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))


def select_samples(
    eroded: np.ndarray,
    nucleus: np.ndarray,
    expressed: np.ndarray,
    stain: np.ndarray,
    origin: tuple[int, int],
    centres: NucleusCentres,
    *,
    negative_distance: float,
    dark: float,
    n_directions: int = 16,
) -> tuple[Samples, Samples]:
    """Positive and negative samples of a window of bins whose first bin is ``origin``.

    Positives: bins with transcripts (``expressed``) inside an eroded nucleus (``eroded``: nucleus
    ids at the bins), labelled with the direction class to that nucleus's centroid (-1 within half
    a bin of it). Negatives: bins without transcripts and outside nuclei (``nucleus``), farther
    than ``negative_distance`` bins from every centroid, with ``stain`` at most ``dark``.
    """
    by, bx = np.indices(eroded.shape)
    by, bx = by + origin[0], bx + origin[1]
    pos = (eroded > 0) & expressed
    ids = eroded[pos]
    row = np.searchsorted(centres.ids, ids)
    if len(ids) and not np.array_equal(centres.ids[np.minimum(row, len(centres) - 1)], ids):
        raise ValueError("Nuclei at the bins are missing from the nucleus centroids.")
    dy, dx = centres.y[row] - by[pos], centres.x[row] - bx[pos]
    direction = np.where(np.hypot(dy, dx) >= 0.5, direction_class(dy, dx, n_directions), -1)
    positives = Samples(by[pos], bx[pos], np.ones(pos.sum(), np.float32), direction)
    if len(centres):
        far = centres.tree.query(np.c_[by.ravel(), bx.ravel()])[0].reshape(eroded.shape) > negative_distance
    else:
        far = np.ones(eroded.shape, bool)
    neg = far & ~expressed & (nucleus == 0) & (stain <= dark)
    negatives = Samples(by[neg], bx[neg], np.zeros(neg.sum(), np.float32), np.full(neg.sum(), -1))
    return positives, negatives


def balance(n_positive: int, n_negative: int, *, max_per_class: int, rng: np.random.Generator):
    """Rows of as many negatives as positives (at most ``max_per_class`` of each), drawn at random."""
    n = min(n_positive, n_negative, max_per_class)
    if n == 0:
        hint = (
            "no nucleus bin has transcripts: check the nuclei and the transcripts' alignment"
            if n_positive == 0
            else "no dark, empty bin lies farther than negative_distance_um from every nucleus: lower it"
        )
        kind = "positive" if n_positive == 0 else "negative"
        raise ValueError(f"SSL-CST found no {kind} training samples: {hint}.")
    return np.sort(rng.choice(n_positive, n, replace=False)), np.sort(rng.choice(n_negative, n, replace=False))


#: Most candidate nuclei per bin (beyond the fourth nearest, none is ever within reach).
_CANDIDATES = 4


def tied_cytoplasm(
    table: BinTable,
    nucleus: np.ndarray,
    origin: tuple[int, int],
    centres: NucleusCentres,
    reach: np.ndarray,
    model: ExpressionModel,
    *,
    margin: float,
    n_directions: int = 16,
) -> Samples:
    """Positives among the bins of ``table`` in the window of ``nucleus`` (nucleus ids at the bins,
    its first bin at ``origin``) that lie outside every nucleus (see the module docstring).

    ``reach`` is each nucleus's reach in bins (rows of ``centres``); the model's cells are the
    nuclei's ids and its genes the columns of ``table``.

    Examples
    --------
    >>> from scipy import sparse
    >>> from jointseg._core.expression_model import fit_expression_model
    >>> counts = sparse.csr_matrix(np.array([[20, 0], [0, 20]]))
    >>> model = fit_expression_model(np.array([1, 2]), counts, counts, np.ones(2), np.ones(2), 1.0, n_types=1,
    ...                              prior_counts=1.0)
    >>> centres = NucleusCentres(np.array([1, 2]), np.array([0.0, 0.0]), np.array([0.0, 6.0]), np.ones(2))
    >>> table = BinTable(y=np.array([0]), x=np.array([4]), offsets=np.array([0, 1]), genes=np.array([0]),
    ...                  weights=np.log1p(np.array([5.0], np.float32)))
    >>> found = tied_cytoplasm(table, np.zeros((1, 8), int), (0, 0), centres, np.full(2, 8.0), model, margin=2.0)
    >>> found.x, found.direction  # nearer nucleus 2, but gene 0 ties the bin to nucleus 1, to its left
    (array([4]), array([8]))

    """
    h, w = nucleus.shape
    inside = (table.y >= origin[0]) & (table.y < origin[0] + h) & (table.x >= origin[1]) & (table.x < origin[1] + w)
    rows = np.flatnonzero(inside)
    rows = rows[nucleus[table.y[rows] - origin[0], table.x[rows] - origin[1]] == 0]
    if len(rows) == 0 or len(centres) == 0:
        return Samples.empty()
    k = min(_CANDIDATES, len(centres))
    distance, nearest = centres.tree.query(np.c_[table.y[rows], table.x[rows]], k=k)
    distance, nearest = distance.reshape(len(rows), k), nearest.reshape(len(rows), k)
    within = distance <= reach[nearest]
    keep = within.any(axis=1)
    rows, nearest, within = rows[keep], nearest[keep], within[keep]
    if len(rows) == 0:
        return Samples.empty()
    # The bins' transcripts, flat: bin r holds genes[offsets[r]:offsets[r + 1]] with these counts.
    genes, starts, weights = table.bags(rows)
    counts = np.rint(np.expm1(weights.astype(np.float64)))
    used, gene_column = np.unique(genes, return_inverse=True)
    candidates = np.unique(nearest[within])
    log_profile = model.block_log_profiles(centres.ids[candidates], used)  # row 0: the background
    slot = np.searchsorted(candidates, nearest) + 1
    slot = np.where(within, slot, -1)
    bin_of = np.repeat(np.arange(len(rows)), np.diff(np.r_[starts, len(genes)]))
    # Log-likelihood of each bin's transcripts under the background and each candidate (-inf: none).
    scores = np.full((len(rows), k + 1), -np.inf)
    scores[:, 0] = np.bincount(bin_of, counts * log_profile[0, gene_column], minlength=len(rows))
    for j in range(k):
        has = slot[:, j] > 0
        per_transcript = counts * log_profile[np.maximum(slot[bin_of, j], 0), gene_column]
        scores[has, j + 1] = np.bincount(bin_of, per_transcript, minlength=len(rows))[has]
    order = np.argsort(scores, axis=1)
    best, second = order[:, -1], order[:, -2]
    gap = scores[np.arange(len(rows)), best] - scores[np.arange(len(rows)), second]
    tied = (best > 0) & (gap >= margin)
    rows = rows[tied]
    row = nearest[tied, best[tied] - 1]
    dy, dx = centres.y[row] - table.y[rows], centres.x[row] - table.x[rows]
    direction = direction_class(dy, dx, n_directions)
    return Samples(table.y[rows], table.x[rows], np.ones(len(rows), np.float32), direction)
