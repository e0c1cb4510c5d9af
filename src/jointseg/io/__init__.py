"""Readers and writers."""

from jointseg._core.checkpoint import checkpoint
from jointseg.io._annotate import annotate_table
from jointseg.io._explorer import write_xenium_explorer
from jointseg.io._zarr import read_zarr, write_zarr

__all__ = ["annotate_table", "checkpoint", "read_zarr", "write_xenium_explorer", "write_zarr"]
