"""New elements of a SpatialData backed by a zarr store: streamed to disk, swapped in only when complete."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import spatialdata
import xarray as xr
import zarr
from spatialdata import SpatialData

from jointseg._core.checkpoint import checkpointed, keeps_results_in_memory
from jointseg._core.memory import release_memory
from jointseg._core.settings import settings

logger = logging.getLogger("jointseg")

_KINDS = ("images", "labels", "points", "shapes", "tables")
_PARTIAL = ".jointseg-partial"


def partial_name(key: str) -> str:
    """The name an element is written under until it is complete.

    spatialdata's reader skips names that start with a dot, so a half-written element is never
    read back as a finished one, and a finished one is renamed in one step.

    Examples
    --------
    >>> partial_name("cell_labels")
    '.cell_labels.jointseg-partial'

    """
    return f".{key}{_PARTIAL}"


def _kind_in_memory(sdata: SpatialData, key: str) -> str:
    return next(kind for kind in _KINDS if key in getattr(sdata, kind))


def _kinds_on_disk(sdata: SpatialData, key: str) -> list[str]:
    return [kind for kind in _KINDS if (Path(sdata.path) / kind / key).exists()]


def writes_to_store(sdata: SpatialData) -> bool:
    """Whether new elements of ``sdata`` go into its zarr store (see ``jg.settings.auto_save_on_disk``)."""
    return sdata.is_backed() and settings.auto_save_on_disk


def announce_written(sdata: SpatialData, keys: list[str]) -> None:
    """One log line naming the store that ``keys`` were written into, and how to keep them in memory."""
    if writes_to_store(sdata):
        logger.info(
            "Wrote %s into the store %s (jg.settings.auto_save_on_disk = False keeps new elements in memory).",
            ", ".join(map(repr, keys)),
            sdata.path,
        )


def _local_store(sdata: SpatialData) -> Path | None:
    path = sdata.path
    return Path(path) if writes_to_store(sdata) and isinstance(path, Path) and path.is_dir() else None


def store_element(sdata: SpatialData, key: str, element, *, overwrite: bool) -> None:
    """Add an element; when ``sdata`` is backed by a zarr store, also write it there right away
    (unless ``jg.settings.auto_save_on_disk`` is False).

    The element is written under :func:`partial_name` and renamed to ``key`` only once it is
    complete: a run killed mid-write leaves the earlier element (or none) under ``key``, never a
    half-written one. The earlier version, if any and if ``overwrite``, is deleted just before the
    rename (spatialdata refuses when another element in memory still reads from it). Images,
    labels and points then continue from the written copy, read lazily, so the in-memory blocks
    they were computed from are released and memory does not grow from one step to the next.

    Raises
    ------
    ValueError
        If ``key`` is already in the store and ``overwrite`` is False.

    """
    store = _local_store(sdata)
    if store is None:
        in_memory = not writes_to_store(sdata) and (sdata.is_backed() or keeps_results_in_memory())
        if in_memory and isinstance(element, xr.DataArray):
            element = element.persist()  # it must not read from a checkpoint or scratch store removed later
        sdata[key] = element
        if writes_to_store(sdata):  # a remote store: no rename there, so replace in place
            if overwrite and key in {p.split("/")[-1] for p in sdata.elements_paths_on_disk()}:
                sdata.delete_element_from_disk(key)
            sdata.write_element(key, overwrite=overwrite)
        return
    if _kinds_on_disk(sdata, key) and not overwrite:
        raise ValueError(f"Element {key!r} already exists in {store}; pass overwrite=True to replace it.")
    partial = partial_name(key)
    for kind in _kinds_on_disk(sdata, partial):  # left by a killed run
        shutil.rmtree(store / kind / partial)
    sdata[partial] = element
    kind = _kind_in_memory(sdata, partial)
    try:
        # On failure the hidden partial stays (threads may still be writing blocks); it is invisible
        # to readers and removed by the next write of ``key``.
        sdata.write_element(partial)
    finally:
        del sdata[partial]
    _replace_on_disk(sdata, store, kind, key, partial)
    if kind in ("images", "labels", "points"):
        element = spatialdata.read_zarr(store, selection=(kind,))[key]
    sdata[key] = element
    release_memory(step_bytes=getattr(element, "nbytes", None))  # tables, points, shapes: always collect


def _replace_on_disk(sdata: SpatialData, store: Path, kind: str, key: str, partial: str) -> None:
    """Delete the earlier element ``key`` (through spatialdata, which checks nothing in memory still
    reads from it), rename ``partial`` to ``key`` and fix the names recorded in the metadata.
    """
    if _kinds_on_disk(sdata, key):
        previous = sdata[key] if key in sdata else None
        if previous is not None:
            del sdata[key]  # the version being replaced: it may be backed by the files deleted here
        try:
            sdata.delete_element_from_disk(key)
        except ValueError:
            if previous is not None:
                sdata[key] = previous
            shutil.rmtree(store / kind / partial)
            raise
    os.replace(store / kind / partial, store / kind / key)
    if kind in ("images", "labels"):
        # ome-zarr records the element's name in its multiscales and, for labels, in the parent group.
        attrs = zarr.open_group(store / kind / key, mode="r+").attrs
        ome = attrs.asdict()
        meta = ome.get("ome", ome)
        for scale in meta.get("multiscales", []):
            scale["name"] = scale.get("name", "").replace(partial, key)
        attrs.update(ome)
        if kind == "labels":
            group = zarr.open_group(store / kind, mode="r+").attrs
            listed = group.asdict()
            names = listed.get("ome", listed).get("labels")
            if names is not None:
                names[:] = list(dict.fromkeys(key if n == partial else n for n in names))
                group.update(listed)
    if sdata.has_consolidated_metadata():
        sdata.write_consolidated_metadata()


def materialise(sdata: SpatialData, array: da.Array) -> tuple[da.Array, Callable[[], None]]:
    """Compute ``array`` once and return it with a clean-up function: inside
    :func:`jointseg.io.checkpoint`, into the checkpoint (resumable); else, for a backed ``sdata``,
    block by block into a scratch zarr store beside the SpatialData store (memory of one block per
    thread); else (or with ``jg.settings.auto_save_on_disk`` False) persisted in memory.
    """
    on_disk = checkpointed(array)
    if on_disk is not None:
        return on_disk, lambda: None
    if not writes_to_store(sdata):
        return array.persist(), lambda: None
    store = Path(sdata.path)
    scratch = Path(tempfile.mkdtemp(prefix=f".{store.name}.jointseg-scratch-", dir=store.parent))
    array.to_zarr(str(scratch / "array.zarr"))
    release_memory(step_bytes=array.nbytes)
    return da.from_zarr(str(scratch / "array.zarr")), lambda: shutil.rmtree(scratch, ignore_errors=True)
