"""Transcript maps on a pixel window: GeneSegNet's location map and the smoothed transcript density."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from jointseg._core.transcripts import TranscriptIndex

#: GeneSegNet truncates each transcript's Gaussian where it falls below this value.
GAUSSIAN_FLOOR = 0.01


def location_map(index: TranscriptIndex, window: tuple[int, int, int, int], *, sigma: float) -> np.ndarray:
    """GeneSegNet's RNA location map on one window: per pixel, the maximum over transcripts of an
    unnormalised Gaussian ``exp(-d^2 / 2 sigma^2)``, zero where it is below 0.01.

    The maximum over transcripts of a Gaussian that decreases with distance is the Gaussian of the
    distance to the *nearest* transcript, so one Euclidean distance transform gives the exact map
    (up to rounding transcripts to pixel centres) in O(pixels), whatever the transcript density;
    summing per-transcript kernels would cost O(transcripts x kernel area).
    """
    y0, y1, x0, x1 = window
    reach = int(np.ceil(sigma * np.sqrt(2 * np.log(1 / GAUSSIAN_FLOOR))))
    gy0, gy1 = max(y0 - reach, 0), min(y1 + reach, index.shape[0])
    gx0, gx1 = max(x0 - reach, 0), min(x1 + reach, index.shape[1])
    sel = index.window(gy0, gy1, gx0, gx1)
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    if len(sel) == 0:
        return out
    occupied = np.zeros((gy1 - gy0, gx1 - gx0), bool)
    occupied[np.rint(index.y[sel]).astype(int) - gy0, np.rint(index.x[sel]).astype(int) - gx0] = True
    dist = ndi.distance_transform_edt(~occupied)[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
    out = np.exp(-(dist**2) / (2 * sigma**2)).astype(np.float32)
    out[out < GAUSSIAN_FLOOR] = 0
    return out


def transcript_density(index: TranscriptIndex, window: tuple[int, int, int, int], *, sigma: float) -> np.ndarray:
    """Transcripts per pixel of all non-control genes on one window, Gaussian-blurred (``sigma``
    pixels, truncated at 4 sigma, so exact on the window when the index covers its neighbourhood).
    """
    y0, y1, x0, x1 = window
    reach = int(np.ceil(4 * sigma))
    gy0, gy1 = max(y0 - reach, 0), min(y1 + reach, index.shape[0])
    gx0, gx1 = max(x0 - reach, 0), min(x1 + reach, index.shape[1])
    sel = index.window(gy0, gy1, gx0, gx1)
    sel = sel[index.gene[sel] >= 0]
    counts = np.zeros((gy1 - gy0, gx1 - gx0), np.float32)
    np.add.at(counts, (np.rint(index.y[sel]).astype(int) - gy0, np.rint(index.x[sel]).astype(int) - gx0), 1.0)
    return ndi.gaussian_filter(counts, sigma, truncate=4.0)[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
