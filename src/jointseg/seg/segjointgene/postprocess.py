"""SegJointGene's label update: cells grow from immutable nucleus cores into bins of their own type."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, watershed

from jointseg._core.masks import fill_holes


def core_types(cores: np.ndarray, allowed: np.ndarray, type_of: np.ndarray) -> np.ndarray:
    """Type of every core pixel's nucleus: ``type_of[id]`` (0 = untyped), and for untyped nuclei the
    most frequent non-zero ``allowed`` type under the nucleus (0 if none).
    """
    ids = cores.ravel()
    type_of = type_of.astype(np.min_scalar_type(int(type_of.max(initial=0))))  # per-pixel temporaries stay small
    types = np.where(ids < len(type_of), type_of[np.minimum(ids, len(type_of) - 1)], 0)
    untyped = (ids > 0) & (types == 0)
    if untyped.any():
        uniq, inverse = np.unique(ids[untyped], return_inverse=True)
        votes = np.zeros((len(uniq), max(int(allowed.max(initial=0)), 0) + 1), np.int64)
        np.add.at(votes, (inverse, np.maximum(allowed.ravel()[untyped], 0)), 1)
        votes[:, 0] = 0
        best = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), 0)
        types[untyped] = best[inverse]
    return types.reshape(cores.shape)


def grow_by_type(
    cores: np.ndarray,
    allowed: np.ndarray,
    type_of: np.ndarray,
    *,
    max_distance: float,
    max_hole_area: int,
    fill: bool = False,
) -> np.ndarray:
    """Grow every nucleus core into the pixels whose ``allowed`` type equals its own.

    Cells of one type grow together by balanced dilation (a watershed on a flat image floods
    breadth-first from all cores at once, so neighbours split contested pixels evenly), only
    through pixels of their type and at most ``max_distance`` pixels from their type's cores;
    what is not connected to a core is never reached. Holes enclosed by one cell (up to
    ``max_hole_area``) are filled and the cores are restored unchanged. ``allowed`` types of
    different cells never overlap (one type per pixel), so types grow independently.

    With ``fill``, the pixels still unclaimed where ``allowed`` is non-zero (negative values mark
    foreground that failed the type rule) then go to the nearest cell, within ``max_distance`` of
    a core: the type rule decides the pixels it is sure of, and the rest of the foreground is
    shared as by plain expansion.

    Parameters
    ----------
    cores
        Nucleus labels.
    allowed
        Per pixel, the type a cell may grow into there (0: background; negative: foreground that
        only ``fill`` may claim).
    type_of
        Type of each nucleus id (0: untyped; see :func:`core_types`).
    max_distance
        Growth limit in pixels.
    max_hole_area
        Largest hole filled.
    fill
        Share the unclaimed foreground by distance after the typed growth.

    Examples
    --------
    >>> import numpy as np
    >>> cores = np.zeros((1, 9), int); cores[0, 1] = 1; cores[0, 7] = 2
    >>> allowed = np.array([[1, 1, 1, 1, 1, 2, 2, 2, 2]])
    >>> grow_by_type(cores, allowed, np.array([0, 1, 2]), max_distance=2, max_hole_area=0)
    array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])

    """
    types = core_types(cores, allowed, type_of)
    out = np.zeros_like(cores)
    flat = np.zeros(cores.shape, np.uint8)
    for t in np.unique(types[types > 0]):
        markers = np.where(types == t, cores, 0)
        reach = ndi.distance_transform_edt(markers == 0) <= max_distance
        mask = ((allowed == t) & reach) | (markers > 0)
        grown = watershed(flat, markers=markers, mask=mask)
        out = np.where((out == 0) & (grown > 0), grown, out)
    if fill:
        near = ndi.distance_transform_edt(cores == 0) <= max_distance
        grown = expand_labels(np.where(cores > 0, cores, out), distance=max_distance)
        out = np.where((out == 0) & (allowed != 0) & near, grown, out)
    out = fill_holes(out, max_hole_area=max_hole_area)
    return np.where(cores > 0, cores, out)
