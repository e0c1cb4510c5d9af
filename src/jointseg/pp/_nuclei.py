"""Classical nuclei segmentation: the prior every jointseg method starts from."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import dask.array as da
import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters, measure, segmentation
from spatialdata import SpatialData, deepcopy
from spatialdata.models import Labels2DModel
from spatialdata.transformations import get_transformation

from jointseg._core.backed import announce_written, materialise, store_element
from jointseg._core.constants import DEFAULT_CS, NUCLEI_KEY
from jointseg._core.masks import max_per_label
from jointseg._core.memory import release_memory
from jointseg._core.nucleus_scale import (
    FAINT_FRACTION,
    FAINT_RADIUS,
    REFERENCE_NUCLEUS_WIDTH_UM,
    StainStats,
    drop_faint_objects,
    measure_nucleus_width,
    smoothed_noise,
    stain_stats,
)
from jointseg._core.tiling import relabel_sequential, segment_blockwise
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import check_new_key, image_2d, resolve_key

logger = logging.getLogger("jointseg")


@dataclass(frozen=True)
class NucleiParams:
    """Parameters of :func:`segment_nuclei`, in pixels (converted from microns by :func:`nuclei`)."""

    smooth_sigma: float = 1.9
    local_block: int = 57
    local_offset: float = 0.0
    global_fraction: float = 0.2
    dist_sigma: float = 3.8
    min_distance: int = 9
    min_area: int = 177
    noise_margin: float = 3.0
    min_thickness: float = 0.0
    faint_radius: float = 0.0
    faint_fraction: float = 0.0


def segment_nuclei(image: np.ndarray, *, stats: StainStats, params: NucleiParams = NucleiParams()) -> np.ndarray:
    """Segment nuclei in one 2D stain array (local threshold, smoothed distance transform, watershed).

    Parameters
    ----------
    image
        2D nuclei stain.
    stats
        Normalisation of the whole image (:func:`jointseg._core.nucleus_scale.stain_stats`); pixels
        below ``params.global_fraction * stats.otsu`` are background whatever the local contrast.
    params
        Filter sizes in pixels.

    Returns
    -------
    int32 labels, 0 = background.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((64, 64)); img[20:40, 20:40] = 1000
    >>> from jointseg._core.nucleus_scale import StainStats
    >>> lab = segment_nuclei(img, stats=StainStats(0, 1000, 0.5), params=NucleiParams(min_area=20))
    >>> int(lab.max())
    1

    """
    x = stats.normalise(image)
    smooth = ndi.gaussian_filter(x, params.smooth_sigma)
    block = params.local_block // 2 * 2 + 1
    local = filters.threshold_local(smooth, block, offset=params.local_offset)
    fg = (smooth > local) & (smooth > params.global_fraction * stats.otsu)
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg))
    # Hysteresis: an object is kept only if a good part of it beats its neighbourhood by more than
    # the smoothed noise, so flat faint areas (the background of a dim field, autofluorescent
    # cytoplasm) do not break into noise blobs, while nuclei keep the outline of the plain threshold.
    margin = params.noise_margin * smoothed_noise(stats.noise, params.smooth_sigma)
    if margin > 0:
        pieces, n = ndi.label(fg)
        strict = np.bincount(pieces[fg & (smooth > local + margin)], minlength=n + 1)
        fg &= (strict >= _STRICT_SHARE * np.bincount(pieces.ravel(), minlength=n + 1))[pieces]
    if not fg.any():
        return np.zeros(x.shape, np.int32)
    depth = ndi.distance_transform_edt(fg).astype(np.float32)
    dist = ndi.gaussian_filter(depth, params.dist_sigma)
    components = measure.label(fg)
    peaks = feature.peak_local_max(dist, min_distance=params.min_distance, labels=components, exclude_border=False)
    markers = np.zeros(x.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-dist, markers, mask=fg)
    areas = np.bincount(labels.ravel())
    small = areas < params.min_area
    if params.min_thickness > 0:  # thin slivers (edges of faint cytoplasm) are not nuclei
        thickness = 2 * max_per_label(depth, labels, len(areas))
        small |= np.asarray(thickness) < params.min_thickness
    small[0] = False
    labels[small[labels]] = 0
    if params.faint_fraction > 0:
        labels = drop_faint_objects(labels, smooth, radius=params.faint_radius, fraction=params.faint_fraction)
    return labels.astype(np.int32)


#: Share of an object's pixels that must beat the noise margin (see :func:`segment_nuclei`).
_STRICT_SHARE = 0.25
#: Objects thinner than this fraction of the nucleus width are dropped (widest inscribed circle).
_THICKNESS = 0.3
#: Measured widths are trusted within this factor of the usual width; beyond it, clamped (and logged).
_WIDTH_RANGE = (1 / 3, 4.0)
#: Filter sizes grow with wide nuclei but never shrink below the tuned ones: on narrower nuclei
#: smaller filters split nuclei more than they help (synthetic 3-4 um nuclei: F1 0.96 scaled vs 0.99 not).


def _measured_width_um(image: da.Array, stats: StainStats, px: float, image_key: str) -> float:
    """The nucleus width of the stain in microns, clamped to a plausible range and logged."""
    measured = measure_nucleus_width(image, stats=stats)
    width = measured.width_px * px
    lo, hi = (f * REFERENCE_NUCLEUS_WIDTH_UM for f in _WIDTH_RANGE)
    if not np.isfinite(width):
        logger.warning("No nuclei stand out in %r to measure; filter sizes left at their defaults.", image_key)
        return REFERENCE_NUCLEUS_WIDTH_UM
    if not lo <= width <= hi:
        logger.warning(
            "Nuclei in %r measure %.3g um wide, outside %.1f-%.0f um: filter sizes set for %.3g um. Pass "
            "nucleus_width_um, or check the pixel size (jg.pp.set_units).",
            image_key, width, lo, hi, float(np.clip(width, lo, hi)),
        )  # fmt: skip
        return float(np.clip(width, lo, hi))
    logger.info("Nuclei in %r are ~%.2f um wide (from %d objects).", image_key, width, measured.n_objects)
    return width


def nuclei(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    channel: int | str | None = None,
    key_added: str = NUCLEI_KEY,
    smooth_um: float = 0.4,
    local_window_um: float = 12.0,
    local_offset: float = 0.0,
    global_fraction: float = 0.2,
    dist_smooth_um: float = 0.8,
    min_distance_um: float = 2.0,
    min_area_um2: float = 8.0,
    nucleus_width_um: float | None = None,
    block_size: int = 2048,
    halo_um: float | None = None,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Segment nuclei in the stain: the prior of every jointseg method.

    A classical, annotation-free segmenter: Gaussian denoising, a local (adaptive) threshold floored
    by a fraction of the global Otsu level (so dim nuclei next to bright ones are kept), hole filling,
    a smoothed distance transform whose maxima seed a marker watershed that splits touching nuclei,
    a size filter, and a contrast filter: an object fainter than 20% of a brighter object within
    four nucleus widths, and joined to it by a plateau of stain (no prominence of its own), is
    stained cytoplasm, not a nucleus, and is dropped. It runs
    lazily block by block with a halo; nuclei cut by a block border are kept whole by the block that
    holds their centre (see :mod:`jointseg._core.tiling`).

    Parameters
    ----------
    sdata
        SpatialData with the stain image.
    image_key
        Image element; may be omitted if there is only one.
    channel
        Channel index or name of the nuclei stain (default: the first).
    key_added
        Name of the new labels element.
    smooth_um, local_window_um, local_offset, global_fraction, dist_smooth_um, min_distance_um, min_area_um2
        Denoising sigma, adaptive-threshold window, its offset (normalised intensity), floor as a
        fraction of Otsu's threshold, smoothing of the distance transform, minimum distance between
        nucleus centres, and minimum nucleus area, for nuclei of the usual width
        (``REFERENCE_NUCLEUS_WIDTH_UM``, 5.7 um; tuned on the Xenium breast crop). For wider
        nuclei, lengths are scaled by ``nucleus_width_um / 5.7`` (areas by its square), so the same
        defaults fit cultured cells with 20 um nuclei; they are never scaled down.
    nucleus_width_um
        Typical nucleus width (twice the inscribed radius). None: measured in the image
        (:func:`jointseg._core.nucleus_scale.measure_nucleus_width`) and logged.
    block_size, halo_um
        Block edge in pixels and halo in microns (must exceed the largest nucleus; None: five
        nucleus widths).
    coordinate_system
        Coordinate system whose units the lengths above are in.
    overwrite
        Replace an existing element named ``key_added``.
    copy
        Return a new SpatialData instead of modifying ``sdata``.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds labels ``key_added`` (uint32, the image's pixel
    grid and transformations), ids 1..N.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> int(sdata["nuclei"].max()) > 10
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    image_key = resolve_key(sdata, "images", image_key)
    check_new_key(sdata, key_added, overwrite=overwrite)
    image = image_2d(sdata, image_key, channel=channel)
    px = pixel_size_um(sdata, image_key, coordinate_system)
    stats = stain_stats(image.data)
    if nucleus_width_um is None:
        nucleus_width_um = _measured_width_um(image.data, stats, px, image_key)
    elif not nucleus_width_um > 0:
        raise ValueError(f"nucleus_width_um must be positive, got {nucleus_width_um!r}.")
    scale = max(nucleus_width_um / REFERENCE_NUCLEUS_WIDTH_UM, 1.0) / px  # pixels per tuned micron
    params = NucleiParams(
        smooth_sigma=smooth_um * scale,
        local_block=max(3, int(round(local_window_um * scale))),
        local_offset=local_offset,
        global_fraction=global_fraction,
        dist_sigma=dist_smooth_um * scale,
        min_distance=max(1, int(round(min_distance_um * scale))),
        min_area=max(1, int(round(min_area_um2 * scale**2))),
        min_thickness=_THICKNESS * nucleus_width_um / px,
        faint_radius=FAINT_RADIUS * nucleus_width_um / px,
        faint_fraction=FAINT_FRACTION,
    )
    halo = int(np.ceil((halo_um / px) if halo_um is not None else 5 * nucleus_width_um / px))
    labels = segment_blockwise(
        image.data,
        segment_nuclei,
        block_size=block_size,
        halo=halo,
        max_objects_per_block=(block_size + 2 * halo) ** 2 // params.min_area + 1,
        stats=stats,
        params=params,
    )
    labels, clean_up = materialise(sdata, labels)
    labels = relabel_sequential(labels)
    element = Labels2DModel.parse(
        labels,
        dims=("y", "x"),
        transformations=get_transformation(sdata[image_key], get_all=True),
    )
    element.attrs["jointseg"] = {
        "method": "nuclei", "image_key": image_key, "nucleus_width_um": nucleus_width_um, **asdict(params)
    }  # fmt: skip
    store_element(sdata, key_added, element, overwrite=overwrite)
    clean_up()
    announce_written(sdata, [key_added])
    n = int(sdata[key_added].max().compute())
    logger.info("Found %d nuclei in %r.", n, image_key)
    # The blocks' temporaries stay in glibc's arenas otherwise: measured +0.28 GB resident after a
    # 4096 px slide, under whatever the next step (a network's training) holds.
    release_memory(step_bytes=image.data.nbytes)
    return sdata if copy else None
