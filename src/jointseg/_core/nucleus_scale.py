"""How wide the nuclei of a stain are, measured from the image itself: no units needed.

Every size jointseg needs before it has cells (filter widths of the nuclei detector, the pixel size
of an image that carries no units) follows from one number: the typical nucleus width in pixels.
It is measured the way cellpose's size model is trained to predict a diameter, but classically: the
stain is normalised and thresholded at Otsu's level, and the width of each foreground object is
twice the largest value of its distance transform (its inscribed circle). Touching nuclei form
clumps, but a clump is still about one nucleus wide, so the area-weighted median width is the
nucleus width whether nuclei are sparse or crowded.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import filters

from jointseg._core.masks import max_per_label

#: Nucleus width (as measured by :func:`measure_nucleus_width`) the nuclei detector's defaults were
#: tuned at: the Xenium breast crop measures 5.7 um at its known 0.2125 um/px (5.6-6.0 um when
#: rescaled 0.5x-2x), in line with the 5-7 um minor axis of most nuclei in tissue sections.
REFERENCE_NUCLEUS_WIDTH_UM = 5.7


@dataclass(frozen=True)
class StainStats:
    """Whole-image statistics of a nuclei stain, shared by every block of a tiled run.

    Parameters
    ----------
    lo, hi
        Intensities mapped to 0 and 1 (1st and 99.8th percentiles).
    otsu
        Otsu's threshold of the normalised, lightly smoothed image.
    noise
        Standard deviation of the pixel noise of the normalised image.

    """

    lo: float
    hi: float
    otsu: float
    noise: float = 0.0

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``image`` mapped to [0, 1] (float32)."""
        return np.clip((np.asarray(image, dtype=np.float32) - self.lo) / (self.hi - self.lo), 0, 1)


def stain_stats(image: da.Array | np.ndarray, *, max_pixels: int = 4_000_000) -> StainStats:
    """Percentiles and Otsu threshold of a stain, from a regular subsample of ~``max_pixels``.

    Blocks of a tiled run must share one normalisation, or their results disagree at the borders.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((64, 64)); img[20:40, 20:40] = 1000
    >>> stats = stain_stats(img)
    >>> stats.hi > stats.lo, 0 < stats.otsu < 1
    (True, True)

    """
    step = max(1, int(np.sqrt(image.size / max_pixels)))
    sample = np.asarray(image[::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(sample, [1, 99.8])
    stats = StainStats(float(lo), float(max(hi, lo + 1e-6)), 1.0)
    norm = stats.normalise(sample)
    otsu = float(filters.threshold_otsu(ndi.gaussian_filter(norm, 1.0))) if np.ptp(norm) > 0 else 1.0
    h, w = image.shape
    y0, x0 = max(0, h // 2 - 512), max(0, w // 2 - 512)
    window = stats.normalise(np.asarray(image[y0 : y0 + 1024, x0 : x0 + 1024]))
    return StainStats(stats.lo, stats.hi, otsu, _pixel_noise(window))


#: An object fainter than ``FAINT_FRACTION`` of a brighter object within ``FAINT_RADIUS`` nucleus
#: widths, joined to it by stain at least ``FAINT_JOIN`` of the object's own peak, is stained
#: cytoplasm, not a nucleus (see :func:`drop_faint_objects`).
FAINT_FRACTION = 0.2
FAINT_RADIUS = 4.0
FAINT_JOIN = 0.85


def drop_faint_objects(
    labels: np.ndarray, intensity: np.ndarray, *, radius: float, fraction: float, join: float = FAINT_JOIN
) -> np.ndarray:
    """Remove the objects whose mean ``intensity`` is below ``fraction`` of a brighter object whose
    centre lies within ``radius`` pixels of theirs and that is joined to them by stain.

    A local threshold also passes the bright side of a dim plateau: stained cytoplasm around a
    nucleus beats its dark surroundings, and its crescents look like nuclei to the threshold. Such a
    crescent is several times fainter than its own nucleus, whatever the illumination, and lies on
    the same plateau: a path from one to the other never drops below ``join`` of the crescent's
    peak (it has no prominence of its own). A dim nucleus beside a bright one is also several times
    fainter, but darker background separates them, so it is kept. The plateau can reach far along
    elongated cells, hence a ``radius`` of several nucleus widths. ``intensity`` is the normalised,
    smoothed stain (background 0).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((40, 40), int); labels[5:15, 5:15] = 1; labels[20:30, 5:15] = 2; labels[5:15, 25:35] = 3
    >>> intensity = np.where(labels == 1, 0.9, np.where(labels == 2, 0.1, np.where(labels == 3, 0.6, 0.0)))
    >>> intensity[15:20, 5:15] = 0.09  # a crescent (2) on the cytoplasm of nucleus 1
    >>> np.unique(drop_faint_objects(labels, intensity, radius=30, fraction=0.2)).tolist()
    [0, 1, 3]
    >>> intensity[15:20, 5:15] = 0.0  # dark background between them: a dim nucleus
    >>> np.unique(drop_faint_objects(labels, intensity, radius=30, fraction=0.2)).tolist()
    [0, 1, 2, 3]

    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) < 2:
        return labels
    mean = np.asarray(ndi.mean(intensity, labels, ids))
    centres = np.asarray(ndi.center_of_mass(labels > 0, labels, ids))
    neighbours = cKDTree(centres).query_ball_point(centres, r=radius)
    candidates = np.flatnonzero(mean < fraction * np.array([mean[n].max() for n in neighbours]))
    boxes = ndi.find_objects(labels) if len(candidates) else []
    faint = []
    for row in candidates:
        brighter = [n for n in neighbours[row] if fraction * mean[n] > mean[row]]
        # The plateau is followed within ``radius`` of the object, where its bright neighbours lie.
        box = boxes[ids[row] - 1]
        peak = intensity[box][labels[box] == ids[row]].max()
        window = tuple(slice(max(int(b.start - radius), 0), int(b.stop + radius)) for b in box)
        plateau, _ = ndi.label(intensity[window] >= join * peak)
        own = np.unique(plateau[labels[window] == ids[row]])
        joined = np.isin(plateau, own[own > 0]) & np.isin(labels[window], ids[brighter])
        if joined.any():
            faint.append(ids[row])
    return np.where(np.isin(labels, faint), 0, labels) if faint else labels


def smoothed_noise(noise: float, sigma: float) -> float:
    """Standard deviation of white noise of standard deviation ``noise`` after a Gaussian blur of ``sigma`` px."""
    return noise / (2 * np.sqrt(np.pi) * max(sigma, 0.5))


def _pixel_noise(image: np.ndarray) -> float:
    """Standard deviation of white pixel noise: the robust spread of each pixel minus the mean of its
    four neighbours (variance 1.25 sigma^2 for white noise; edges are too few to move the median).
    Needs a contiguous window: on a strided subsample, structure would alias into the estimate.
    """
    if min(image.shape) < 3:
        return 0.0
    centre = image[1:-1, 1:-1]
    neighbours = (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:]) / 4
    residual = (centre - neighbours).ravel()
    mad = np.median(np.abs(residual - np.median(residual)))
    return float(1.4826 * mad / np.sqrt(1.25))


@dataclass(frozen=True)
class NucleusScale:
    """The measured nucleus width of a stain.

    Parameters
    ----------
    width_px
        Area-weighted median of twice the inscribed radius of the thresholded objects, in pixels.
    n_objects
        Objects measured (those touching a window border are left out).

    """

    width_px: float
    n_objects: int


def nucleus_width_from_labels(labels: np.ndarray) -> NucleusScale:
    """Nucleus width of labelled nuclei: the area-weighted median of twice their inscribed radii.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((40, 40), int); lab[5:15, 5:15] = 1; lab[20:36, 20:36] = 2
    >>> nucleus_width_from_labels(lab).width_px  # the larger square holds most of the area
    16.0

    """
    labels = np.asarray(labels)
    # The distance to the nearest pixel of another label or background: each nucleus's own depth.
    boundary = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        diff = np.diff(labels, axis=axis) != 0
        lead = [slice(None)] * 2
        lead[axis] = slice(1, None)
        boundary[tuple(lead)] |= diff
        trail = [slice(None)] * 2
        trail[axis] = slice(None, -1)
        boundary[tuple(trail)] |= diff
    depth = ndi.distance_transform_edt((labels > 0) & ~boundary) + 1.0
    depth[labels == 0] = 0
    return _weighted_width(labels, depth)


def _weighted_width(components: np.ndarray, depth: np.ndarray) -> NucleusScale:
    """Area-weighted median of twice the deepest ``depth`` of each component (0 = background)."""
    ids = np.unique(components)
    ids = ids[ids > 0]
    if not len(ids):
        return NucleusScale(float("nan"), 0)
    radius = max_per_label(depth, components, int(ids[-1]) + 1)[ids]
    area = np.bincount(components.ravel())[ids].astype(np.float64)
    keep = radius >= 1.5  # single-pixel specks say nothing about the nuclei
    if not keep.any():
        return NucleusScale(float("nan"), 0)
    radius, area = radius[keep], area[keep]
    order = np.argsort(radius)
    cumulative = np.cumsum(area[order])
    median = radius[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    return NucleusScale(float(2 * median), int(keep.sum()))


def measure_nucleus_width(
    image: da.Array | np.ndarray,
    *,
    stats: StainStats | None = None,
    window: int = 1024,
    max_windows: int = 4,
) -> NucleusScale:
    """Typical nucleus width of a stain in pixels, from up to ``max_windows`` windows spread over it.

    Two passes: the first thresholds at Otsu's level (clumps of touching nuclei stay merged, so it
    overestimates); the second thresholds locally over ~1.6 first-pass widths, as the nuclei
    detector does, and separates most clumps. Windows are read at a resolution where the nuclei
    are ~16 px wide, so the cost does not grow with the pixel size.

    Parameters
    ----------
    image
        2D nuclei stain (numpy or dask; only the windows are read).
    stats
        Its normalisation (see :func:`stain_stats`); computed when None.
    window
        Edge of each window in pixels, at the resolution it is measured.
    max_windows
        Windows read, on a regular grid over the image.

    Returns
    -------
    The width, ``nan`` with ``n_objects == 0`` when nothing stands out of the background.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img = np.zeros((200, 200))
    >>> for cy, cx in [(40, 40), (40, 120), (120, 60), (150, 150)]:
    ...     img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] = 1000
    >>> round(measure_nucleus_width(img).width_px)  # discs 21 px across
    21

    """
    stats = stats or stain_stats(image)
    first = _measure(image, stats, window, max_windows, factor=2 if min(image.shape) >= 2 * window else 1)
    if not first.n_objects:
        return first
    factor = max(1, int(first.width_px // 16))
    second = _measure(image, stats, window, max_windows, factor=factor, local_width=first.width_px / factor)
    return second if second.n_objects else first


def _measure(image, stats: StainStats, window: int, max_windows: int, *, factor: int, local_width=None):
    """One pass of :func:`measure_nucleus_width` on images block-averaged by ``factor``."""
    h, w = image.shape
    size = (min(window * factor, h) // factor * factor, min(window * factor, w) // factor * factor)
    per_axis = max(1, int(np.sqrt(max_windows)))
    components, depths, offset = [], [], 0
    for y0 in np.unique(np.linspace(0, h - size[0], per_axis).astype(int)):
        for x0 in np.unique(np.linspace(0, w - size[1], per_axis).astype(int)):
            crop = np.asarray(image[y0 : y0 + size[0], x0 : x0 + size[1]], dtype=np.float32)
            if factor > 1:
                crop = crop.reshape(size[0] // factor, factor, size[1] // factor, factor).mean(axis=(1, 3))
            # Texture inside large nuclei must not split them: smooth over a fraction of their width.
            sigma = max(1.0, 0.08 * (local_width or 0))
            smooth = ndi.gaussian_filter(stats.normalise(crop), sigma)
            if local_width is None:
                foreground = smooth > stats.otsu
            else:
                block = int(1.6 * local_width) // 2 * 2 + 1
                # As the detector: brighter than the neighbourhood by 3 noise levels (block-averaging
                # by ``factor`` divides white noise by ``factor``).
                margin = 3 * smoothed_noise(stats.noise / factor, sigma)
                local = filters.threshold_local(smooth, block, offset=-margin)
                foreground = (smooth > local) & (smooth > 0.2 * stats.otsu)
            foreground = ndi.binary_fill_holes(ndi.binary_opening(foreground))
            labelled, n = ndi.label(foreground)
            if local_width is not None:  # as the detector: stained cytoplasm is not a nucleus
                radius = FAINT_RADIUS * local_width
                labelled = drop_faint_objects(labelled, smooth, radius=radius, fraction=FAINT_FRACTION)
                foreground = labelled > 0
            edge = np.unique(np.r_[labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]])
            labelled[np.isin(labelled, edge[edge > 0])] = 0
            components.append(np.where(labelled > 0, labelled + offset, 0).ravel())
            depths.append(ndi.distance_transform_edt(foreground).ravel())
            offset += n
    scale = _weighted_width(np.concatenate(components), np.concatenate(depths))
    return NucleusScale(scale.width_px * factor, scale.n_objects)
