"""Readers and writers."""

from jointseg.io._zarr import read_zarr, write_zarr

__all__ = ["read_zarr", "write_zarr"]
