"""How much of the cells' borders faces empty space rather than another cell."""

from __future__ import annotations

import numpy as np


def background_border_fraction(labels: np.ndarray) -> float:
    """The share of the cells' borders that faces the background.

    A border is a pair of 4-neighbouring pixels with different labels; one between two cells is a
    border of each of them, one between a cell and the background (0) of that cell only. 0: every
    cell touches only other cells (packed tissue); 1: no two cells touch. Compared with the truth's,
    it tells whether a segmentation opens or closes the gaps between cells (``docs/results.md``,
    "Gaps between cells").

    Parameters
    ----------
    labels
        A label image (0 = background); loaded into memory.

    Returns
    -------
    The fraction, nan when there is no border.

    Examples
    --------
    >>> background_border_fraction(np.array([[1, 1, 2, 2]]))  # two cells sharing one border
    0.0
    >>> background_border_fraction(np.array([[1, 0, 2]]))
    1.0

    """
    labels = np.asarray(labels)
    between_cells = facing_background = 0
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = a != b
        between_cells += int(np.count_nonzero(differ & (a > 0) & (b > 0)))
        facing_background += int(np.count_nonzero(differ & ((a == 0) | (b == 0))))
    total = facing_background + 2 * between_cells
    return facing_background / total if total else float("nan")
