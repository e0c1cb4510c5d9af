"""Package-wide settings (``jg.settings``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """jointseg's settings; change them on ``jg.settings``.

    Attributes
    ----------
    auto_save_on_disk
        When a SpatialData is backed by a zarr store (``spatialdata.read_zarr(path)``), write each
        new element (nuclei, cell labels, polygons, tables) into that store as soon as it is
        complete, as sopa's setting of the same name does: long runs keep what they finished and
        memory stays bounded on whole slides. ``False`` keeps the new elements in memory and leaves
        the store as it was (write them later with ``sdata.write_element``); whole-slide results then
        need memory for their labels (4 bytes per pixel each). :func:`jointseg.io.read_zarr` gives a
        SpatialData detached from its store, which never writes into it either.

    Examples
    --------
    >>> import jointseg as jg
    >>> jg.settings.auto_save_on_disk
    True

    """

    auto_save_on_disk: bool = True


settings = Settings()
