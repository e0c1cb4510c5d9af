"""The contiguity-keeping solver of :func:`jointseg.seg.refine`: bins of a grid move between
neighbouring cells and the background to raise the likelihood of their transcripts plus a Potts
smoothness, and no move may ever cut a cell in two.

Iterated conditional modes (Besag 1986) over the boundary bins, after a short annealing: a bin
may take the label of one of its four neighbours or the background, whichever raises

    sum over its transcripts of log(rate_c * p_c(gene)) - rate_c - smoothness * (border it makes)
        + prior(bin) if c is a cell

the most. The prior is a method's own evidence that the bin belongs to some cell (e.g. the log-odds
of a network's foreground probability); 0 without one. The border counts the bin's 8-neighbours of
another label (diagonal neighbours weigh 1/sqrt(2), so the boundary penalty is close to isotropic,
as in Boykov & Kolmogorov's geo-cuts); a neighbour across a border between a cell and the
background counts ``background_border`` times. At 1 (the Potts model) a gap between two cells
costs twice the border they would share, so the smoothness closes thin gaps: packed tissue. At 0.5
every cell pays for its own perimeter only and a gap costs what a shared border does, so the
transcripts alone decide whether it opens.

A bin leaves a cell only if the cell's other bins around it stay 4-connected through its
8-neighbourhood (a local simple-point test, sufficient for global connectivity), and bins on a
cell's anchor (its nucleus) never move, so every cell stays one piece holding its nucleus. Proseg
makes the same kind of boundary-voxel moves by Metropolis sampling; ICM is its deterministic,
greedy limit and converges in tens of sweeps.

Written with numba: the sweeps visit every boundary bin and branch per bin, which numpy cannot
vectorise (each move changes the neighbours' options).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_DIAGONAL = 1.0 / np.sqrt(2.0)


@njit(cache=True)
def _keeps_connected(lab: np.ndarray, y: int, x: int, a: int) -> bool:
    """Whether ``a``'s pixels among the 4-neighbours of ``(y, x)`` stay 4-connected through its
    8-neighbourhood without ``(y, x)`` (the ring's runs of ``a`` that touch a 4-neighbour number <= 1).
    """
    h, w = lab.shape
    ring_y = (-1, -1, 0, 1, 1, 1, 0, -1)
    ring_x = (0, 1, 1, 1, 0, -1, -1, -1)
    ring = 0  # bit k: ring position k holds ``a`` (a bit mask, not an array: no allocation per call)
    start = -1
    for k in range(8):
        yy, xx = y + ring_y[k], x + ring_x[k]
        if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] == a:
            ring |= 1 << k
        elif start < 0:
            start = k
    if start < 0:
        return True
    runs = 0
    in_run = False
    touches_side = False
    for step in range(1, 9):
        k = (start + step) % 8
        if ring >> k & 1:
            if not in_run:
                in_run, touches_side = True, False
            touches_side = touches_side or k % 2 == 0
        elif in_run:
            runs += touches_side
            in_run = False
    return runs <= 1


@njit(cache=True)
def _log_likelihood(b: int, c: int, starts, genes, log_profile, log_rate, rate) -> float:
    """Log-likelihood of bin ``b``'s transcripts under label ``c`` (Poisson count, multinomial genes)."""
    lo, hi = starts[b], starts[b + 1]
    total = (hi - lo) * log_rate[c] - rate[c]
    for t in range(lo, hi):
        total += log_profile[c, genes[t]]
    return total


@njit(cache=True)
def _border(lab: np.ndarray, y: int, x: int, c: int, diagonal: float, background_border: float) -> float:
    """Weighted number of ``(y, x)``'s 8-neighbours not labelled ``c`` (see the module docstring)."""
    h, w = lab.shape
    total = 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = y + dy, x + dx
            if (dy or dx) and 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != c:
                weight = 1.0 if dy == 0 or dx == 0 else diagonal
                total += weight * background_border if c == 0 or lab[yy, xx] == 0 else weight
    return total


@njit(cache=True)
def _uniform(seed: int, sweep: int, y: int, x: int) -> float:
    """A uniform number in [0, 1) fixed by the seed, the sweep and the bin's position in the image
    (splitmix64 of their combination): the same in a block and in the whole image.
    """
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    z ^= np.uint64(sweep) * np.uint64(0xBF58476D1CE4E5B9)
    z ^= np.uint64(y) * np.uint64(0x94D049BB133111EB)
    z ^= np.uint64(x) * np.uint64(0xD6E8FEB86659FD93)
    for _ in range(2):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return float(z >> np.uint64(11)) * 2.0**-53


@njit(cache=True)
def _visit(lab, frozen, prior, y, x, sweep, starts, genes, log_profile, log_rate, rate, smoothness, background_border,
           temperature, seed, oy, ox, candidates, scores):  # fmt: skip
    """Update one bin (see :func:`solve_bins`); returns whether it moved. ``candidates`` and
    ``scores`` are work buffers of 6 (allocated once per solve: an allocation per bin cost as much
    as the rest of the visit).
    """
    h, w = lab.shape
    if frozen[y, x]:
        return False
    a = lab[y, x]
    n = 0
    for dy, dx in ((-1, 0), (0, 1), (1, 0), (0, -1)):
        yy, xx = y + dy, x + dx
        if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != a and lab[yy, xx] not in candidates[:n]:
            candidates[n] = lab[yy, xx]
            n += 1
    if n == 0:
        return False
    if a != 0 and 0 not in candidates[:n]:
        candidates[n] = 0
        n += 1
    candidates[n] = a
    n += 1
    b = y * w + x
    for m in range(n):
        c = candidates[m]
        scores[m] = _log_likelihood(b, c, starts, genes, log_profile, log_rate, rate)
        scores[m] -= smoothness * _border(lab, y, x, c, _DIAGONAL, background_border)
        if c != 0:
            scores[m] += prior[y, x]
    best = a
    if temperature > 0:
        top = scores[:n].max()
        total = 0.0
        for m in range(n):
            scores[m] = np.exp((scores[m] - top) / temperature)
            total += scores[m]
        r = _uniform(seed, sweep, oy + y, ox + x) * total
        for m in range(n):
            r -= scores[m]
            if r <= 0:
                best = candidates[m]
                break
    else:
        best_score = scores[n - 1] + 1e-9
        for m in range(n - 1):
            if scores[m] > best_score:
                best, best_score = candidates[m], scores[m]
    if best == a or (a != 0 and not _keeps_connected(lab, y, x, a)):
        return False
    lab[y, x] = best
    return True


@njit(cache=True, nogil=True)  # nogil: dask's threads solve blocks side by side
def solve_bins(
    lab: np.ndarray,
    frozen: np.ndarray,
    starts: np.ndarray,
    genes: np.ndarray,
    log_profile: np.ndarray,
    log_rate: np.ndarray,
    rate: np.ndarray,
    smoothness: float,
    background_border: float,
    max_sweeps: int,
    temperatures: np.ndarray,
    seed: int,
    origin: tuple[int, int],
    prior: np.ndarray,
) -> np.ndarray:
    """Relabel the bins of ``lab`` in place (see the module docstring); returns the moves per sweep.

    Each sweep visits the bins in four phases of a 2 x 2 checkerboard (by their position in the
    image, ``origin`` + their position in ``lab``); bins of one phase are never 8-neighbours, so
    their updates do not depend on the order they are visited in, and a block computes what the
    whole image would, wherever it starts. The first ``len(temperatures)`` sweeps sample each bin's
    label at that temperature (Gibbs, random numbers fixed by ``seed`` and the bin's position); the
    rest take the best label (ICM) until no bin moves or ``max_sweeps``.

    Parameters
    ----------
    lab
        ``(h, w)`` labels of the bins: 0 background, ``1..n`` the cells (rows of ``log_profile``).
    frozen
        Bins that never change (anchors, and bins out of every cell's reach).
    starts, genes
        The transcripts of bin ``b`` (raster order) are ``genes[starts[b]:starts[b + 1]]``, as
        columns of ``log_profile``.
    log_profile
        ``(n + 1, n_genes)`` log probability of each gene per label (row 0: the background).
    log_rate, rate
        Expected transcripts per bin per label and its log.
    smoothness
        Cost per 4-neighbour across a border (diagonals weigh 1/sqrt(2)).
    background_border
        Weight of a border between a cell and the background, relative to one between two cells.
    max_sweeps
        Most ICM sweeps after the annealing.
    temperatures
        Temperature of each annealing sweep.
    seed
        Seed of the annealing.
    origin
        Position of ``lab[0, 0]`` in the image's bin grid.
    prior
        ``(h, w)`` score added to every cell label of each bin (0: no prior).

    """
    h, w = lab.shape
    oy, ox = origin
    n_anneal = len(temperatures)
    moves = np.zeros(n_anneal + max_sweeps, np.int64)
    candidates = np.empty(6, np.int64)
    scores = np.empty(6)
    # The greedy sweeps visit only bins whose 3 x 3 neighbourhood changed since their last visit:
    # the others would keep their label (a greedy visit depends on nothing else), so the result is
    # that of full sweeps, and the last sweeps, which move a few dozen bins, cost almost nothing.
    pending = np.ones((h, w), np.bool_)
    pending_next = np.zeros((h, w), np.bool_)
    for sweep in range(n_anneal + max_sweeps):
        greedy = sweep >= n_anneal
        temperature = 0.0 if greedy else temperatures[sweep]
        for phase in range(4):
            y0 = (phase // 2 + oy) % 2
            x0 = (phase % 2 + ox) % 2
            for y in range(y0, h, 2):
                for x in range(x0, w, 2):
                    if greedy:
                        if not pending[y, x]:
                            continue
                        pending[y, x] = False
                    if _visit(lab, frozen, prior, y, x, sweep, starts, genes, log_profile, log_rate, rate, smoothness,
                              background_border, temperature, seed, oy, ox, candidates, scores):  # fmt: skip
                        moves[sweep] += 1
                        if greedy:  # later phases of this sweep and every phase of the next
                            ys, ye, xs, xe = max(y - 1, 0), min(y + 2, h), max(x - 1, 0), min(x + 2, w)
                            pending[ys:ye, xs:xe] = True
                            pending_next[ys:ye, xs:xe] = True
        if greedy:
            if moves[sweep] == 0:
                return moves[: sweep + 1]
            pending, pending_next = pending_next, pending
            pending_next[:] = False
    return moves
