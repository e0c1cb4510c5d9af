"""Nuclei grown into the transcript foreground: the kernel of the baseline and of the learnt methods' priors."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from jointseg._core.density import transcript_density
from jointseg._core.transcripts import TranscriptIndex


def grow_nuclei(nuclei: np.ndarray, foreground: np.ndarray, *, distance: float | np.ndarray) -> np.ndarray:
    """Grow labelled nuclei by up to ``distance`` pixels (each pixel to its nearest nucleus), only
    into ``foreground`` pixels; nuclei themselves are always kept.

    ``distance`` is one number for every nucleus, or an array indexed by nucleus id (each nucleus's
    own reach; a pixel goes to its nearest nucleus if it lies within that nucleus's reach).

    Examples
    --------
    >>> import numpy as np
    >>> nuc = np.zeros((1, 9), int); nuc[0, 0] = 1; nuc[0, 8] = 2
    >>> grow_nuclei(nuc, np.ones((1, 9), bool), distance=3)
    array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    >>> grow_nuclei(nuc, np.ones((1, 9), bool), distance=np.array([0, 1, 4]))
    array([[1, 1, 0, 0, 0, 2, 2, 2, 2]])

    """
    if np.ndim(distance) == 0:
        grown = expand_labels(nuclei, distance=distance)
    else:
        # skimage's expand_labels with a per-label limit: the same nearest-nucleus Voronoi split.
        to_nucleus, (iy, ix) = ndi.distance_transform_edt(nuclei == 0, return_indices=True)
        nearest = nuclei[iy, ix]
        grown = np.where(to_nucleus <= np.asarray(distance)[nearest], nearest, 0)
    return np.where(foreground | (nuclei > 0), grown, 0)


def expand_block(nuclei_ext, index: TranscriptIndex, ext, core, distance, sigma, min_count) -> np.ndarray:
    """Nuclei of the window ``ext`` grown by ``distance`` px (one number, or one per nucleus id) where
    the transcript density (``sigma`` px) reaches ``min_count`` per pixel, cropped to the ``core``
    window (int64 labels).
    """
    fg = transcript_density(index, ext, sigma=sigma) >= min_count
    grown = grow_nuclei(np.asarray(nuclei_ext), fg, distance=distance)
    y0, y1, x0, x1 = core
    return grown[y0 - ext[0] : y1 - ext[0], x0 - ext[2] : x1 - ext[2]].astype(np.int64)
