"""Reading inputs without ever writing into them, and writing results atomically."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import spatialdata
from spatialdata import SpatialData


def read_zarr(path: str | Path) -> SpatialData:
    """Read a SpatialData zarr store lazily and detach it from the store.

    jointseg writes each new element straight into a backed store (so long runs keep finished
    elements); a detached object keeps new elements in memory instead, so the input store is never
    modified. Write the result elsewhere with :func:`write_zarr`.

    Examples
    --------
    >>> import jointseg as jg, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "x.zarr")
    >>> jg.io.write_zarr(jg.datasets.synthetic(shape=(64, 64), n_cells=2), out)
    >>> jg.io.read_zarr(out).is_backed()
    False

    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No SpatialData store at {path}.")
    sdata = spatialdata.read_zarr(path)
    sdata.path = None
    return sdata


def write_zarr(sdata: SpatialData, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``sdata`` to a new zarr store, atomically: to a temporary name, renamed when complete.

    A crash mid-write therefore never leaves a half-written store under ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"Output {path} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autosharding.*")  # zarr 3 notice, not actionable here
        sdata.write(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    sdata.path = None
