"""Helpers shared by the public functions: element lookup, overwrite checks, device choice."""

from __future__ import annotations

import logging
import re
from typing import Literal

import numpy as np
import xarray as xr
from spatialdata import SpatialData

logger = logging.getLogger("jointseg")

ElementKind = Literal["images", "labels", "points", "shapes", "tables"]


def resolve_key(sdata: SpatialData, kind: ElementKind, key: str | None) -> str:
    """Return ``key`` if it names an element of ``kind``, or the only such element when ``key`` is None.

    Raises
    ------
    KeyError
        If ``key`` is not an element of ``kind``, or ``key`` is None and there is not exactly one.

    """
    available = list(getattr(sdata, kind).keys())
    if key is None:
        if len(available) == 1:
            return available[0]
        raise KeyError(f"Pass the {kind[:-1]} key explicitly: found {len(available)} {kind} elements {available}.")
    if key not in available:
        raise KeyError(f"No {kind[:-1]} element {key!r}; available {kind}: {available}.")
    return key


def check_new_key(sdata: SpatialData, key: str, *, overwrite: bool) -> None:
    """Refuse to replace an existing element named ``key`` unless ``overwrite`` is True, and refuse
    names SpatialData cannot store (before any work is done, not after it).
    """
    if not re.fullmatch(r"[\w.-]+", key or "", flags=re.ASCII):
        raise ValueError(f"Invalid element name {key!r}: use only letters, digits, '_', '.' and '-'.")
    if key in sdata and not overwrite:
        raise ValueError(
            f"Element {key!r} already exists in the SpatialData object; pass overwrite=True to replace it "
            f"or choose another key_added."
        )


def image_2d(sdata: SpatialData, image_key: str, *, channel: int | str | None = None) -> xr.DataArray:
    """The full-resolution ``(y, x)`` array of an image element (multiscale: level 0).

    Parameters
    ----------
    channel
        Channel index or name; by default the first channel. The nuclei stain in Xenium data.

    """
    image = sdata.images[image_key]
    if isinstance(image, xr.DataTree):
        image = next(iter(image["scale0"].values()))
    if "c" in image.dims:
        if channel is None:
            channel = 0
        if isinstance(channel, str):
            names = [str(c) for c in image.coords["c"].values]
            if channel not in names:
                raise KeyError(f"No channel {channel!r} in image {image_key!r}; channels: {names}.")
            image = image.isel(c=names.index(channel))
        else:
            image = image.isel(c=channel)
    if "z" in image.dims:
        raise ValueError(f"Image {image_key!r} is 3D; jointseg segments 2D images (project z first).")
    return image.transpose("y", "x")


def labels_2d(sdata: SpatialData, labels_key: str) -> xr.DataArray:
    """The full-resolution ``(y, x)`` array of a labels element."""
    labels = sdata.labels[labels_key]
    if isinstance(labels, xr.DataTree):
        labels = next(iter(labels["scale0"].values()))
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"Labels {labels_key!r} must have an integer dtype, got {labels.dtype}.")
    return labels


def select_device(device: str | None = None) -> str:
    """Pick the torch device: ``device`` if given, else cuda, then mps, then cpu.

    Examples
    --------
    >>> select_device("cpu")
    'cpu'

    """
    import torch

    if device is not None:
        return str(torch.device(device))
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def sampled_percentiles(image, q: list[float], *, max_pixels: int = 4_000_000) -> np.ndarray:
    """Percentiles ``q`` of a 2D (dask) array from a regular subsample of at most ~``max_pixels``,
    so that every block of a tiled run shares one normalisation.
    """
    step = max(1, int(np.sqrt(image.size / max_pixels)))
    sample = np.asarray(image[::step, ::step], dtype=np.float32)
    return np.percentile(sample, q)
