"""Nuclei grown into the transcript foreground: the kernel of the baseline and of the learnt methods' priors."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import expand_labels

from jointseg._core.density import transcript_density
from jointseg._core.transcripts import TranscriptIndex


def grow_nuclei(nuclei: np.ndarray, foreground: np.ndarray, *, distance: float) -> np.ndarray:
    """Grow labelled nuclei by up to ``distance`` pixels (each pixel to its nearest nucleus), only
    into ``foreground`` pixels; nuclei themselves are always kept.

    Examples
    --------
    >>> import numpy as np
    >>> nuc = np.zeros((1, 9), int); nuc[0, 0] = 1; nuc[0, 8] = 2
    >>> grow_nuclei(nuc, np.ones((1, 9), bool), distance=3)
    array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])

    """
    grown = expand_labels(nuclei, distance=distance)
    return np.where(foreground | (nuclei > 0), grown, 0)


def expand_block(nuclei_ext, index: TranscriptIndex, ext, core, distance, sigma, min_count) -> np.ndarray:
    """Nuclei of the window ``ext`` grown by ``distance`` px where the transcript density (``sigma``
    px) reaches ``min_count`` per pixel, cropped to the ``core`` window (int64 labels).
    """
    fg = transcript_density(index, ext, sigma=sigma) >= min_count
    grown = grow_nuclei(np.asarray(nuclei_ext), fg, distance=distance)
    y0, y1, x0, x1 = core
    return grown[y0 - ext[0] : y1 - ext[0], x0 - ext[2] : x1 - ext[2]].astype(np.int64)
