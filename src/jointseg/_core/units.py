"""Microns per unit of a coordinate system: set by the user, read from how spatialdata-io laid the data
out, or, when nothing says, estimated from the size of the nuclei (and then logged).
"""

from __future__ import annotations

import logging

import numpy as np
from spatialdata import SpatialData
from spatialdata.transformations import get_transformation

from jointseg._core.constants import DEFAULT_CS, UNS_KEY
from jointseg._core.nucleus_scale import REFERENCE_NUCLEUS_WIDTH_UM, measure_nucleus_width, nucleus_width_from_labels
from jointseg._core.utils import image_2d, labels_2d

logger = logging.getLogger("jointseg")

_ATTRS_KEY = "microns_per_unit"
_SOURCE_KEY = "units_source"
#: Nuclei measured this many times wider or narrower than usual mean the units are probably not microns.
_IMPLAUSIBLE = 4.0
#: spatialdata-io readers whose points keep the vendor's micron coordinates and carry a
#: transformation into a "global" system in image pixels.
_MICRON_POINT_READERS = ("xenium", "merscope")
#: Readers whose coordinates are pixels with no micron information in the files jointseg sees.
_PIXEL_READERS = ("cosmx",)


def set_units(sdata: SpatialData, microns_per_unit: float, *, coordinate_system: str = DEFAULT_CS) -> None:
    """Record how many microns one unit of ``coordinate_system`` is.

    Every jointseg parameter in microns (``max_distance_um``, ``min_area_um2``, ...) is converted
    through this value. It is stored in ``sdata.attrs["jointseg"]`` and so travels with the zarr
    store. Without it jointseg reads the units as follows (:func:`microns_per_unit`):

    - ``spatialdata_io.xenium`` and ``spatialdata_io.merscope`` outputs: their ``"global"`` system is
      the image's pixels and the transcripts keep the vendor's microns, so the points'
      transformation gives the pixel size (0.2125 um on Xenium, ~0.108 um on MERSCOPE);
    - ``spatialdata_io.cosmx`` outputs are in pixels with no micron information: call this function
      with the instrument's pixel size (e.g. 0.12028 um for CosMx SMI; check your run's metadata);
    - images with a scale transformation into ``coordinate_system``: it is taken to be in microns
      (as in :func:`jointseg.datasets.xenium_breast`), with a warning if the nuclei then measure an
      implausible size;
    - images whose pixels *are* the coordinate system (identity transformation, plain TIFFs) and no
      other information: the pixel size is estimated from the nuclei (their typical width, see
      :func:`jointseg._core.nucleus_scale.measure_nucleus_width`, is taken as
      ``REFERENCE_NUCLEUS_WIDTH_UM``), recorded here, and logged in one warning line.

    Parameters
    ----------
    sdata
        SpatialData to annotate (in place).
    microns_per_unit
        Microns in one unit of ``coordinate_system`` (positive, finite).
    coordinate_system
        The coordinate system that links the elements jointseg uses.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.xenium_breast(subset="small")
    >>> jg.pp.set_units(sdata, 1.0)
    >>> jg.pp.microns_per_unit(sdata)
    1.0

    """
    value = float(microns_per_unit)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"microns_per_unit must be a positive finite number, got {microns_per_unit!r}.")
    _record(sdata, coordinate_system, value, "set by the user")


def _record(sdata: SpatialData, coordinate_system: str, value: float, source: str) -> None:
    attrs = sdata.attrs.setdefault(UNS_KEY, {})
    attrs.setdefault(_ATTRS_KEY, {})[coordinate_system] = value
    attrs.setdefault(_SOURCE_KEY, {})[coordinate_system] = source


def microns_per_unit(
    sdata: SpatialData, coordinate_system: str = DEFAULT_CS, *, element_key: str | None = None
) -> float:
    """Microns in one unit of ``coordinate_system`` (see :func:`set_units` for how it is found).

    Parameters
    ----------
    sdata
        The SpatialData.
    coordinate_system
        The coordinate system.
    element_key
        The image or labels to measure nuclei in if the units must be estimated (default: the
        first image in ``coordinate_system``, else the first labels).

    Raises
    ------
    ValueError
        For data read by a pixel-only reader (CosMx) when :func:`set_units` was not called.

    Examples
    --------
    >>> import jointseg as jg
    >>> jg.pp.microns_per_unit(jg.datasets.xenium_breast(subset="small"))
    1.0

    """
    recorded = sdata.attrs.get(UNS_KEY, {}).get(_ATTRS_KEY, {})
    if coordinate_system in recorded:
        return float(recorded[coordinate_system])
    reader = sdata.attrs.get("spatialdata_io_reader")
    if reader in _MICRON_POINT_READERS:
        scale = _points_scale(sdata, coordinate_system)
        if scale is not None:
            logger.info(
                "%s data: coordinate system %r is in pixels of %.4g um (from the transcripts' transformation).",
                reader,
                coordinate_system,
                1.0 / scale,
            )
            return 1.0 / scale
    if reader in _PIXEL_READERS:
        raise ValueError(
            f"{reader} coordinates are pixels and carry no pixel size: call "
            f"jg.pp.set_units(sdata, microns_per_unit, coordinate_system={coordinate_system!r}) first "
            "(e.g. 0.12028 for CosMx SMI), or pass --microns-per-unit on the command line."
        )
    key = element_key or _element_in(sdata, coordinate_system)
    if key is None:
        logger.warning(
            "No element in coordinate system %r to measure: its units are taken as microns.", coordinate_system
        )
        return 1.0
    scale = _element_scale(sdata, key, coordinate_system)
    width_units = _nucleus_width_px(sdata, key) * scale
    if abs(scale - 1.0) > 1e-9:
        _check_plausible(width_units, key, coordinate_system)
        _record(sdata, coordinate_system, 1.0, "assumed microns (the images have a scale transformation)")
        return 1.0
    if not np.isfinite(width_units):
        raise ValueError(
            f"Coordinate system {coordinate_system!r} carries no pixel size and no nuclei stand out in {key!r} to "
            "estimate one: call jg.pp.set_units(sdata, microns_per_unit) (or pass --microns-per-unit)."
        )
    value = REFERENCE_NUCLEUS_WIDTH_UM / width_units
    _record(sdata, coordinate_system, value, f"estimated from the nuclei in {key!r}")
    logger.warning(
        "No pixel size known for coordinate system %r: estimated %.4g um per unit from the nuclei in %r "
        "(typically %.1f units wide, taken as %.1f um); if you know it, call jg.pp.set_units(sdata, value) "
        "or pass --microns-per-unit.",
        coordinate_system, value, key, width_units, REFERENCE_NUCLEUS_WIDTH_UM,
    )  # fmt: skip
    return value


def _element_in(sdata: SpatialData, coordinate_system: str) -> str | None:
    """The first image (else labels) element with a transformation to ``coordinate_system``."""
    for kind in ("images", "labels"):
        for key, element in getattr(sdata, kind).items():
            if coordinate_system in get_transformation(element, get_all=True):
                return key
    return None


def _element_scale(sdata: SpatialData, key: str, coordinate_system: str) -> float:
    """Units of ``coordinate_system`` per pixel of element ``key``."""
    t = get_transformation(sdata[key], to_coordinate_system=coordinate_system)
    m = t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    return float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))


def _nucleus_width_px(sdata: SpatialData, key: str, window: int = 2048) -> float:
    """Typical nucleus width in pixels of an image (measured) or labels (their central window)."""
    if key in sdata.labels:
        labels = labels_2d(sdata, key).data
        h, w = labels.shape
        y0, x0 = max(0, h // 2 - window // 2), max(0, w // 2 - window // 2)
        return nucleus_width_from_labels(np.asarray(labels[y0 : y0 + window, x0 : x0 + window])).width_px
    return measure_nucleus_width(image_2d(sdata, key).data).width_px


def _check_plausible(width_units: float, key: str, coordinate_system: str) -> None:
    ratio = width_units / REFERENCE_NUCLEUS_WIDTH_UM
    if np.isfinite(ratio) and not 1 / _IMPLAUSIBLE < ratio < _IMPLAUSIBLE:
        logger.warning(
            "Coordinate system %r is taken to be in microns, but the nuclei in %r then measure %.3g um wide "
            "(usually ~%.0f um): if its units are not microns, call jg.pp.set_units(sdata, microns_per_unit).",
            coordinate_system, key, width_units, REFERENCE_NUCLEUS_WIDTH_UM,
        )  # fmt: skip


def pixel_size_um(sdata: SpatialData, element_key: str, coordinate_system: str = DEFAULT_CS) -> float:
    """Pixel edge length of an image (or labels) element in microns (see :func:`set_units`).

    Examples
    --------
    >>> import jointseg as jg
    >>> pixel_size_um(jg.datasets.synthetic(shape=(64, 64), n_cells=2), "morphology")
    0.2125

    """
    scale = _element_scale(sdata, element_key, coordinate_system)
    return scale * microns_per_unit(sdata, coordinate_system, element_key=element_key)


def _points_scale(sdata: SpatialData, coordinate_system: str) -> float | None:
    """Units of ``coordinate_system`` per point coordinate unit, from the first points element in it."""
    for points in sdata.points.values():
        transforms = get_transformation(points, get_all=True)
        if coordinate_system in transforms:
            matrix = transforms[coordinate_system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
            return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    return None
