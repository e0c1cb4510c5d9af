"""Sampling an image on a grid of another pixel size: a network's working grid and back.

A grid ``factor`` times coarser than the slide's has its pixel ``j`` centred on the slide's
coordinate ``(j + 0.5) * factor - 0.5``; the slide's pixel ``y`` lies at ``(y + 0.5) / factor - 0.5``
on it. Both directions are the same operation (:func:`resample` at :func:`grid_coordinates`), and
every output pixel depends only on a fixed neighbourhood of the input, so blocks of a slide give
exactly what the whole slide would, given :func:`prefilter_margin` pixels of context. Written here
rather than taken from ``skimage.transform.resize``: that maps a whole array edge to edge, so two
blocks of one slide would be sampled on different grids and disagree at their seams.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def grid_factor(network_pixel_size_um: float | None, pixel_size_um: float) -> float:
    """How many times coarser a network's grid is than a slide's (1 when within 1%, or unknown).

    Examples
    --------
    >>> grid_factor(0.5, 0.2125), grid_factor(0.5, 0.5), grid_factor(None, 0.2)
    (2.3529411764705883, 1.0, 1.0)

    """
    if not network_pixel_size_um:
        return 1.0
    factor = network_pixel_size_um / pixel_size_um
    return 1.0 if abs(factor - 1) < 0.01 else float(factor)


def working_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Shape of the grid ``factor`` times coarser than an image of ``shape``.

    Examples
    --------
    >>> working_shape((2400, 1800), 2.0)
    (1200, 900)

    """
    return tuple(max(int(round(s / factor)), 1) for s in shape)


def grid_coordinates(start: int, stop: int, factor: float, origin: float = 0.0) -> np.ndarray:
    """Where the centres of pixels ``start .. stop - 1`` of a grid ``factor`` times coarser lie on
    the finer grid, counted from its pixel ``origin``.

    Examples
    --------
    >>> grid_coordinates(0, 3, 2.0).tolist()
    [0.5, 2.5, 4.5]
    >>> grid_coordinates(0, 4, 0.5).tolist()  # back onto the finer grid
    [-0.25, 0.25, 0.75, 1.25]

    """
    return (np.arange(start, stop) + 0.5) * factor - 0.5 - origin


def prefilter_sigma(factor: float) -> float:
    """Gaussian smoothing before sampling ``factor`` times coarser, against aliasing (as
    ``skimage.transform.resize``'s ``anti_aliasing``: ``(factor - 1) / 2``); 0 when not coarser.
    """
    return max((factor - 1) / 2, 0.0)


def prefilter_margin(factor: float) -> int:
    """Pixels of context around a block for :func:`resample` to match the whole image there."""
    return int(np.ceil(4 * prefilter_sigma(factor))) + 2


def resample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, *, order: int, sigma: float = 0.0) -> np.ndarray:
    """``image`` (``(..., H, W)``) sampled at the rows ``ys`` and columns ``xs`` (pixel coordinates,
    clamped to the image): bilinear (``order=1``, after a Gaussian of ``sigma`` pixels) or the
    nearest pixel (``order=0``, for labels). Separable, on the grid only: a fraction of the cost of
    ``scipy.ndimage.map_coordinates`` on every output pixel.

    Examples
    --------
    >>> resample(np.array([[0.0, 2.0]]), np.array([0.0]), np.array([0.0, 0.5, 1.0]), order=1).tolist()
    [[0.0, 1.0, 2.0]]

    """
    h, w = image.shape[-2:]
    if order == 0:
        iy = np.clip(np.rint(ys).astype(np.intp), 0, h - 1)
        ix = np.clip(np.rint(xs).astype(np.intp), 0, w - 1)
        return image[..., iy[:, None], ix[None, :]]
    if order != 1:
        raise ValueError(f"order must be 0 or 1, got {order}.")
    image = np.asarray(image, np.float32)
    if sigma > 0:
        image = ndi.gaussian_filter(image, [0] * (image.ndim - 2) + [sigma, sigma], mode="nearest")
    out = _linear(image, np.clip(ys, 0, h - 1), axis=-2)
    return _linear(out, np.clip(xs, 0, w - 1), axis=-1)


def _linear(image: np.ndarray, coords: np.ndarray, *, axis: int) -> np.ndarray:
    """Linear interpolation of ``image`` along ``axis`` at ``coords`` (inside the axis)."""
    n = image.shape[axis]
    lo = np.minimum(np.floor(coords).astype(np.intp), max(n - 2, 0))
    hi = np.minimum(lo + 1, n - 1)
    t = (coords - lo).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = len(coords)
    t = t.reshape(shape)
    return np.take(image, lo, axis=axis) * (1 - t) + np.take(image, hi, axis=axis) * t
