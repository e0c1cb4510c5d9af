"""Give freed memory back to the operating system between the steps of a long run."""

from __future__ import annotations

import ctypes
import functools
import gc
import sys

#: Steps that handled less than this skip the full garbage collection: it costs ~0.3 s in a process
#: that imported scanpy and torch (measured on 2 cores), more than a small step itself, and a small
#: step cannot leave enough garbage in reference cycles to matter.
COLLECT_ABOVE_BYTES = 64 * 2**20
#: glibc's ``mallopt`` parameter for the most malloc arenas (``M_ARENA_MAX`` in malloc.h).
_M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (``mallopt``, ``malloc_trim``); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas for all of this process's threads.

    By default glibc gives threads up to 8 arenas per core, and memory freed in one arena serves
    only the threads attached to it: torch's and dask's threads each keep their own free blocks.
    With 2 arenas, GeneSegNet trained on a 4k slide by the command line peaked at 2.03 GB instead of
    2.15 GB, in the same time (``docs/results.md``). It acts on arenas created after the call, so
    the command line calls it first thing; in Python, set the environment variable
    ``MALLOC_ARENA_MAX=2`` before starting the interpreter (or the notebook's kernel) instead.

    Parameters
    ----------
    arenas
        Most arenas.

    Returns
    -------
    Whether the limit was set (False where the C library is not glibc).

    Examples
    --------
    >>> import sys
    >>> limit_malloc_arenas(2) or not sys.platform.startswith("linux")  # set wherever glibc is
    True

    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_memory(*, step_bytes: int | None = None) -> None:
    """Return memory freed by the last step to the operating system.

    glibc keeps the blocks that dask's worker threads freed in per-thread arenas, and Arrow's pool
    keeps the pages of the parquet it read, so without this the resident size of a whole-slide run
    only grows from step to step (measured: ~0.5 GB retained after indexing 20M transcripts). The
    same remedy that dask.distributed documents for its workers (``malloc_trim``); a no-op where
    glibc or pyarrow is missing.

    Parameters
    ----------
    step_bytes
        Roughly how many bytes the last step held; below :data:`COLLECT_ABOVE_BYTES` the full
        garbage collection is skipped (the pools are still trimmed, which is free). ``None``: always
        collect.

    Examples
    --------
    >>> release_memory(step_bytes=1_000)  # a small step: pools trimmed, no collection

    """
    if step_bytes is None or step_bytes >= COLLECT_ABOVE_BYTES:
        gc.collect()
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)
