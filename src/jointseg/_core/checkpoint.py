"""Checkpoints: slide-sized results written block by block to disk, so a killed run resumes."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

logger = logging.getLogger("jointseg")

_DONE = "jointseg-done"


#: The directory of the checkpoint the caller runs in, if any, and whether results stay in memory.
_ACTIVE: contextvars.ContextVar[tuple[Path, bool] | None] = contextvars.ContextVar("jointseg_checkpoint", default=None)


def active() -> bool:
    """Whether the caller runs inside :func:`checkpoint`."""
    return _ACTIVE.get() is not None


def keeps_results_in_memory() -> bool:
    """Whether the active checkpoint asks for results held in memory (see :func:`checkpoint`)."""
    state = _ACTIVE.get()
    return state is not None and state[1]


@contextlib.contextmanager
def checkpoint(directory: str | Path, *, recover: bool = True, in_memory: bool = True) -> Iterator[Path]:
    """Write the slide-sized results of the jointseg calls inside the block to ``directory``,
    block by block, so that a run that crashes or is killed can be resumed.

    Each result (nuclei labels, cell labels) is a zarr array named after its dask graph, with a
    marker per finished block. With ``recover=True``, a rerun of the same calls on the same inputs
    finds the same arrays and computes only the blocks without a marker; a block that was being
    written when the run died has no marker and is computed again. ``recover=False`` starts from
    an empty directory. The directory is removed when the block exits without an error, and kept
    otherwise. The command line's ``--resume`` uses this.

    Parameters
    ----------
    directory
        Where to keep the blocks (created if needed); outside any input store.
    recover
        Reuse the finished blocks of an earlier, interrupted run.
    in_memory
        Hold the new elements of an in-memory SpatialData in memory, so that they outlive the
        directory. ``False`` leaves them reading from the checkpoint, which saves their memory
        (4 bytes per pixel each) but makes them unusable after the block: for results written
        elsewhere inside the block, as the command line does.

    Examples
    --------
    >>> import jointseg as jg, tempfile, os
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> with jg.io.checkpoint(os.path.join(tempfile.mkdtemp(), "ckpt")):
    ...     jg.pp.nuclei(sdata, image_key="morphology", block_size=64)

    """
    directory = Path(directory)
    if directory.exists() and not recover:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = _ACTIVE.set((directory, in_memory))
    try:
        yield directory
    finally:
        _ACTIVE.reset(token)
        if not any(directory.iterdir()):  # nothing to resume from (e.g. the inputs were refused)
            directory.rmdir()
    shutil.rmtree(directory, ignore_errors=True)


def checkpointed(array: da.Array) -> da.Array | None:
    """Compute ``array`` into the active checkpoint and return it read lazily from there; None when
    no checkpoint is active.
    """
    state = _ACTIVE.get()
    if state is None:
        return None
    path = state[0] / f"{array.name}.zarr"
    # creates the array, or opens the one an interrupted run left
    zarr.open_array(str(path), mode="a", shape=array.shape, chunks=tuple(c[0] for c in array.chunks), dtype=array.dtype)
    done = path / _DONE
    done.mkdir(exist_ok=True)
    starts = [np.r_[0, np.cumsum(c)] for c in array.chunks]
    # One graph for all the blocks still to do, each write depending on its own block's key only:
    # culling drops the work of the finished blocks (one collection per block would make dask
    # merge and optimise the whole graph once per block).
    name = f"jointseg-checkpoint-{array.name}"
    layer, skipped = {}, 0
    for index in np.ndindex(*array.numblocks):
        marker = done / "_".join(map(str, index))
        if marker.exists():
            skipped += 1
            continue
        region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index, strict=True))
        write = partial(_write_block, path=str(path), region=region, marker=str(marker))
        layer[(name, *index)] = (write, (array.name, *index))
    total = int(np.prod(array.numblocks))
    if skipped:
        logger.info(
            "Checkpoint %s: %d of %d blocks already done, computing %d.", path.name, skipped, total, total - skipped
        )
    layer[name] = (_all_done, list(layer))
    dask.compute(Delayed(name, HighLevelGraph.from_collections(name, layer, dependencies=[array])))
    return da.from_zarr(str(path), chunks=array.chunks)


def _all_done(_: list) -> None:
    return None


def _write_block(block: np.ndarray, *, path: str, region: tuple[slice, ...], marker: str) -> None:
    zarr.open_array(path, mode="r+")[region] = block
    Path(marker).touch()  # only after the block is fully written
