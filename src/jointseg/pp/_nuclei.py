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

from jointseg._core.backed import materialise, store_element
from jointseg._core.constants import DEFAULT_CS, NUCLEI_KEY
from jointseg._core.tiling import relabel_sequential, segment_blockwise
from jointseg._core.utils import check_new_key, image_2d, pixel_size_um, resolve_key

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


def _intensity_stats(image: da.Array, max_pixels: int = 4_000_000) -> tuple[float, float, float]:
    """Global 1st/99.8th percentiles and the Otsu threshold of the normalised, smoothed image,
    from a strided subsample: blocks must share one normalisation or their results disagree.
    """
    step = max(1, int(np.sqrt(image.size / max_pixels)))
    sample = np.asarray(image[::step, ::step].compute(), dtype=np.float32)
    lo, hi = np.percentile(sample, [1, 99.8])
    hi = max(hi, lo + 1e-6)
    norm = np.clip((sample - lo) / (hi - lo), 0, 1)
    otsu = float(filters.threshold_otsu(ndi.gaussian_filter(norm, 1.0))) if np.ptp(norm) > 0 else 1.0
    return float(lo), float(hi), otsu


def segment_nuclei(
    image: np.ndarray, *, lo: float, hi: float, otsu: float, params: NucleiParams = NucleiParams()
) -> np.ndarray:
    """Segment nuclei in one 2D stain array (local threshold, smoothed distance transform, watershed).

    Parameters
    ----------
    image
        2D nuclei stain.
    lo, hi
        Intensities mapped to 0 and 1 (global statistics of the whole image).
    otsu
        Otsu threshold of the normalised image; pixels below ``params.global_fraction * otsu`` are
        background whatever the local contrast.
    params
        Filter sizes in pixels.

    Returns
    -------
    int32 labels, 0 = background.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((64, 64)); img[20:40, 20:40] = 1000
    >>> lab = segment_nuclei(img, lo=0, hi=1000, otsu=0.5, params=NucleiParams(min_area=20))
    >>> int(lab.max())
    1

    """
    x = np.clip((np.asarray(image, dtype=np.float32) - lo) / (hi - lo), 0, 1)
    smooth = ndi.gaussian_filter(x, params.smooth_sigma)
    block = params.local_block // 2 * 2 + 1
    local = filters.threshold_local(smooth, block, offset=params.local_offset)
    fg = (smooth > local) & (smooth > params.global_fraction * otsu)
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg))
    if not fg.any():
        return np.zeros(x.shape, np.int32)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(fg).astype(np.float32), params.dist_sigma)
    components = measure.label(fg)
    peaks = feature.peak_local_max(dist, min_distance=params.min_distance, labels=components, exclude_border=False)
    markers = np.zeros(x.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-dist, markers, mask=fg)
    areas = np.bincount(labels.ravel())
    small = areas < params.min_area
    small[0] = False
    labels[small[labels]] = 0
    return labels.astype(np.int32)


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
    block_size: int = 2048,
    halo_um: float = 25.0,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Segment nuclei in the stain: the prior of every jointseg method.

    A classical, annotation-free segmenter: Gaussian denoising, a local (adaptive) threshold floored
    by a fraction of the global Otsu level (so dim nuclei next to bright ones are kept), hole filling,
    a smoothed distance transform whose maxima seed a marker watershed that splits touching nuclei,
    and a size filter. It runs lazily block by block with a halo; nuclei cut by a block border are
    kept whole by the block that holds their centre (see :mod:`jointseg._core.tiling`).

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
        nucleus centres, and minimum nucleus area. Lengths in the units of ``coordinate_system``
        (microns for Xenium); defaults tuned on the Xenium breast crop.
    block_size, halo_um
        Block edge in pixels and halo in microns (must exceed the largest nucleus).
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
    params = NucleiParams(
        smooth_sigma=smooth_um / px,
        local_block=max(3, int(round(local_window_um / px))),
        local_offset=local_offset,
        global_fraction=global_fraction,
        dist_sigma=dist_smooth_um / px,
        min_distance=max(1, int(round(min_distance_um / px))),
        min_area=max(1, int(round(min_area_um2 / px**2))),
    )
    lo, hi, otsu = _intensity_stats(image.data)
    halo = int(np.ceil(halo_um / px))
    labels = segment_blockwise(
        image.data,
        segment_nuclei,
        block_size=block_size,
        halo=halo,
        max_objects_per_block=(block_size + 2 * halo) ** 2 // params.min_area + 1,
        lo=lo,
        hi=hi,
        otsu=otsu,
        params=params,
    )
    labels, clean_up = materialise(sdata, labels)
    labels = relabel_sequential(labels)
    element = Labels2DModel.parse(
        labels,
        dims=("y", "x"),
        transformations=get_transformation(sdata[image_key], get_all=True),
    )
    element.attrs["jointseg"] = {"method": "nuclei", "image_key": image_key, **asdict(params)}
    store_element(sdata, key_added, element, overwrite=overwrite)
    clean_up()
    n = int(sdata[key_added].max().compute())
    logger.info("Found %d nuclei in %r.", n, image_key)
    return sdata if copy else None
