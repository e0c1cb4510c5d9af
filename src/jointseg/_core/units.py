"""Microns per unit of a coordinate system: set by the user, or read from how spatialdata-io laid the data out."""

from __future__ import annotations

import logging

import numpy as np
from spatialdata import SpatialData
from spatialdata.transformations import get_transformation

from jointseg._core.constants import DEFAULT_CS, UNS_KEY

logger = logging.getLogger("jointseg")

_ATTRS_KEY = "microns_per_unit"
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
    - anything else: the coordinate system is taken to be in microns (as in
      :func:`jointseg.datasets.xenium_breast`).

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
    sdata.attrs.setdefault(UNS_KEY, {}).setdefault(_ATTRS_KEY, {})[coordinate_system] = value


def microns_per_unit(sdata: SpatialData, coordinate_system: str = DEFAULT_CS) -> float:
    """Microns in one unit of ``coordinate_system`` (see :func:`set_units` for how it is found).

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
    return 1.0


def _points_scale(sdata: SpatialData, coordinate_system: str) -> float | None:
    """Units of ``coordinate_system`` per point coordinate unit, from the first points element in it."""
    for points in sdata.points.values():
        transforms = get_transformation(points, get_all=True)
        if coordinate_system in transforms:
            matrix = transforms[coordinate_system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
            return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    return None
