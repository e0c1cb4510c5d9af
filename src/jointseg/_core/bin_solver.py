"""The contiguity-keeping solver of :func:`jointseg.seg.refine`: bins of a grid move between
neighbouring cells and the background to raise the likelihood of their transcripts plus a Potts
smoothness, and no move may ever cut a cell in two.

Iterated conditional modes (Besag 1986) over the boundary bins, in alternating raster order: a bin
may take the label of one of its four neighbours or the background, whichever raises

    sum over its transcripts of log(rate_c * p_c(gene)) - rate_c + smoothness * (8-neighbours labelled c)

the most (diagonal neighbours weigh 1/sqrt(2), so the boundary penalty is close to isotropic, as
in Boykov & Kolmogorov's geo-cuts). A bin leaves a cell only if the cell's other bins around it
stay 4-connected through its 8-neighbourhood (a local simple-point test, sufficient for global
connectivity), and bins on a cell's anchor (its nucleus) never move, so every cell stays one piece
holding its nucleus. Proseg makes the same kind of boundary-voxel moves by Metropolis sampling;
ICM is its deterministic, greedy limit and converges in tens of sweeps.

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
    ring = np.zeros(8, np.bool_)
    start = -1
    for k in range(8):
        yy, xx = y + ring_y[k], x + ring_x[k]
        ring[k] = 0 <= yy < h and 0 <= xx < w and lab[yy, xx] == a
        if not ring[k] and start < 0:
            start = k
    if start < 0:
        return True
    runs = 0
    in_run = False
    touches_side = False
    for step in range(1, 9):
        k = (start + step) % 8
        if ring[k]:
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
def _agreement(lab: np.ndarray, y: int, x: int, c: int, diagonal: float) -> float:
    """Weighted number of ``(y, x)``'s 8-neighbours labelled ``c``."""
    h, w = lab.shape
    total = 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = y + dy, x + dx
            if (dy or dx) and 0 <= yy < h and 0 <= xx < w and lab[yy, xx] == c:
                total += 1.0 if dy == 0 or dx == 0 else diagonal
    return total


@njit(cache=True)
def solve_bins(
    lab: np.ndarray,
    frozen: np.ndarray,
    starts: np.ndarray,
    genes: np.ndarray,
    log_profile: np.ndarray,
    log_rate: np.ndarray,
    rate: np.ndarray,
    smoothness: float,
    max_sweeps: int,
    temperatures: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Relabel the bins of ``lab`` in place (see the module docstring); returns the moves per sweep.

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
        Reward per agreeing 4-neighbour (diagonals weigh 1/sqrt(2)).
    max_sweeps
        Stop after this many sweeps if moves continue.

    """
    h, w = lab.shape
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    candidates = np.zeros(6, np.int64)
    scores = np.zeros(6)
    n_anneal = len(temperatures)
    max_sweeps = max_sweeps + n_anneal
    moves = np.zeros(max_sweeps, np.int64)
    side_y = (-1, 0, 1, 0)
    side_x = (0, 1, 0, -1)
    for sweep in range(max_sweeps):
        n_moves = 0
        for i in range(h):
            y = i if sweep % 2 == 0 else h - 1 - i
            for j in range(w):
                x = j if sweep % 2 == 0 else w - 1 - j
                if frozen[y, x]:
                    continue
                a = lab[y, x]
                n = 0
                for k in range(4):
                    yy, xx = y + side_y[k], x + side_x[k]
                    if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != a:
                        c = lab[yy, xx]
                        if c not in candidates[:n]:
                            candidates[n] = c
                            n += 1
                if n == 0:
                    continue
                if a != 0 and 0 not in candidates[:n]:
                    candidates[n] = 0
                    n += 1
                b = y * w + x
                candidates[n] = a
                n += 1
                for m in range(n):
                    c = candidates[m]
                    scores[m] = _log_likelihood(b, c, starts, genes, log_profile, log_rate, rate)
                    scores[m] += smoothness * _agreement(lab, y, x, c, _DIAGONAL)
                best = a
                if sweep < n_anneal:
                    t = temperatures[sweep]
                    top = scores[:n].max()
                    total = 0.0
                    for m in range(n):
                        scores[m] = np.exp((scores[m] - top) / t)
                        total += scores[m]
                    state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
                    r = float(state >> np.uint64(11)) * 2.0**-53 * total
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
                if best != a and (a == 0 or _keeps_connected(lab, y, x, a)):
                    lab[y, x] = best
                    n_moves += 1
        moves[sweep] = n_moves
        if n_moves == 0 and sweep >= n_anneal:
            return moves[: sweep + 1]
    return moves
