"""Label-image clean-up shared by the methods: fill holes enclosed by one cell, keep each cell's largest piece."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import label as connected_regions


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
    hi = ndi.maximum(above, background, index)
    lo = ndi.minimum(below, background, index)
    size = np.bincount(background.ravel(), minlength=n + 1)[1:]
    edge = np.unique(np.concatenate([background[[0, -1], :].ravel(), background[:, [0, -1]].ravel()]))
    touches_edge = np.isin(index, edge)
    fill = (hi == lo) & (hi > 0) & (size <= max_hole_area) & ~touches_edge
    lut = np.zeros(n + 1, dtype=labels.dtype)
    lut[1:][fill] = np.asarray(hi, dtype=labels.dtype)[fill]
    return np.where(labels == 0, lut[background], labels)
