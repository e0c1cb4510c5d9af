"""Label-image helpers shared by the methods: per-label maxima and minima, fill holes enclosed by one cell,
keep each cell's largest piece.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import label as connected_regions


def max_per_label(values: np.ndarray, labels: np.ndarray, n_labels: int, *, empty: float = 0) -> np.ndarray:
    """The maximum of ``values`` over each label ``0 .. n_labels - 1`` (``empty`` for a label with no pixel).

    What :func:`scipy.ndimage.maximum` gives with ``index=np.arange(n_labels)``, ~50x faster on a
    2,048 px block: scipy sorts the pixels by label, numpy's ``maximum.at`` makes one pass (it was
    a third of the nuclei step's time).

    Examples
    --------
    >>> max_per_label(np.array([3, 1, 4, 1, 5]), np.array([0, 2, 2, 0, 0]), 4)
    array([5, 0, 4, 0])

    """
    return _reduce_per_label(np.maximum, values, labels, n_labels, empty)


def min_per_label(values: np.ndarray, labels: np.ndarray, n_labels: int, *, empty: float = 0) -> np.ndarray:
    """The minimum of ``values`` over each label ``0 .. n_labels - 1``; see :func:`max_per_label`.

    Examples
    --------
    >>> min_per_label(np.array([3, 1, 4, 1, 5]), np.array([0, 2, 2, 0, 0]), 4, empty=-1)
    array([ 1, -1,  1, -1])

    """
    return _reduce_per_label(np.minimum, values, labels, n_labels, empty)


def _reduce_per_label(ufunc: np.ufunc, values, labels, n_labels: int, empty: float) -> np.ndarray:
    values, labels = np.asarray(values).ravel(), np.asarray(labels).ravel()
    info = np.iinfo(values.dtype) if np.issubdtype(values.dtype, np.integer) else np.finfo(values.dtype)
    out = np.full(n_labels, info.min if ufunc is np.maximum else info.max, values.dtype)
    ufunc.at(out, labels, values)
    out[np.bincount(labels, minlength=n_labels)[:n_labels] == 0] = empty
    return out


def keep_largest_piece(labels: np.ndarray) -> np.ndarray:
    """Keep, of each label, only its largest 4-connected piece."""
    pieces = connected_regions(labels, background=0, connectivity=1)
    if pieces.max() == 0:
        return labels
    flat_p, flat_l = pieces.ravel(), labels.ravel()
    size = np.bincount(flat_p)
    owner = np.zeros(size.size, dtype=labels.dtype)
    owner[flat_p] = flat_l
    table = pd.DataFrame({"owner": owner[1:], "size": size[1:]}, index=np.arange(1, size.size))
    best = table[table["owner"] > 0].sort_values("size", ascending=False).groupby("owner").head(1).index
    keep = np.zeros(size.size, bool)
    keep[best] = True
    return np.where(keep[pieces], labels, 0)


def fill_holes(labels: np.ndarray, *, max_hole_area: int) -> np.ndarray:
    """Fill background holes of at most ``max_hole_area`` pixels enclosed by a single label."""
    background, n = ndi.label(labels == 0)
    if n == 0:
        return labels
    index = np.arange(1, n + 1)
    big = np.iinfo(np.int64).max
    above = ndi.maximum_filter(labels, size=3)
    below = ndi.minimum_filter(np.where(labels > 0, labels, big), size=3)
    hi = max_per_label(above, background, n + 1)[1:]
    lo = min_per_label(below, background, n + 1)[1:]
    size = np.bincount(background.ravel(), minlength=n + 1)[1:]
    edge = np.unique(np.concatenate([background[[0, -1], :].ravel(), background[:, [0, -1]].ravel()]))
    touches_edge = np.isin(index, edge)
    fill = (hi == lo) & (hi > 0) & (size <= max_hole_area) & ~touches_edge
    lut = np.zeros(n + 1, dtype=labels.dtype)
    lut[1:][fill] = np.asarray(hi, dtype=labels.dtype)[fill]
    return np.where(labels == 0, lut[background], labels)
