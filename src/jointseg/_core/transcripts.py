"""Transcripts in the image's pixel frame, held compactly and indexed by block.

Every transcript-level step (RNA maps, aggregation, metrics) needs, per block of the image, the
transcripts that fall in it plus a halo. ``TranscriptIndex`` reads the points once, partition by
partition, maps them through the spatialdata transformations into the image's pixel grid and keeps
only ``x, y`` (float32) and a gene code (int32): 12 bytes per transcript, within the package's
memory bar of 50 bytes per transcript. Sorting by block gives each block's transcripts as a slice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from spatialdata import SpatialData
from spatialdata.transformations import get_transformation

from jointseg._core.constants import CONTROL_GENE_PATTERN, DEFAULT_CS
from jointseg._core.memory import release_memory

logger = logging.getLogger("jointseg")


def points_to_pixel_matrix(
    sdata: SpatialData, points_key: str, image_key: str, *, coordinate_system: str = DEFAULT_CS
) -> np.ndarray:
    """3x3 affine matrix that maps the points' ``(x, y)`` to the image's pixel ``(x, y)``.

    Both elements are mapped into ``coordinate_system`` with their own transformations; the image's
    transformation is then inverted. Points in microns and an image with a ``Scale`` to microns
    (Xenium) therefore line up without any assumption that they share units.
    """
    mats = []
    for key in (points_key, image_key):
        transforms = get_transformation(sdata[key], get_all=True)
        if coordinate_system not in transforms:
            raise ValueError(
                f"Element {key!r} has no transformation to coordinate system {coordinate_system!r}; "
                f"it has {sorted(transforms)}."
            )
        mats.append(transforms[coordinate_system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")))
    points_to_cs, image_to_cs = mats
    return np.linalg.inv(image_to_cs) @ points_to_cs


def feature_key(sdata: SpatialData, points_key: str) -> str:
    """The gene column of a points element (its ``feature_key`` attribute)."""
    points = sdata.points[points_key]
    key = points.attrs.get("spatialdata_attrs", {}).get("feature_key")
    if key is None or key not in points.columns:
        raise ValueError(
            f"Points {points_key!r} have no gene column: set feature_key when parsing them "
            f"(PointsModel.parse(..., feature_key='feature_name')). Columns: {list(points.columns)}."
        )
    return key


def gene_categories(points: dd.DataFrame, gene_col: str) -> pd.Index:
    """Known categories of the gene column, computing them once if they are unknown."""
    col = points[gene_col]
    if isinstance(col.dtype, pd.CategoricalDtype) and col.cat.known:
        return col.cat.categories
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.as_known().cat.categories
    return pd.Index(np.sort(col.dropna().unique().compute().astype(str)))


def count_duplicates(x: np.ndarray, y: np.ndarray, gene: np.ndarray, *, step: int = 1 << 22) -> int:
    """Number of transcripts that repeat an earlier one exactly (same float32 ``x``, ``y`` and gene).

    The position's bits and a mixed gene code form one 64-bit key, built ``step`` rows at a time
    into one array (8 bytes per transcript, no slide-sized temporaries); sorting the keys
    (vectorised, ~0.1 s for 20M) finds the repeats. A gene mixed into the key could in principle
    collide with another position, so the count is exact up to such 64-bit collisions.

    Examples
    --------
    >>> x = np.array([1.0, 1.0, 2.0], np.float32)
    >>> count_duplicates(x, x, np.array([3, 3, 3]))
    1

    """
    key = np.empty(len(x), np.uint64)
    for lo in range(0, len(x), step):
        part = slice(lo, lo + step)
        key[part] = np.asarray(x[part], np.float32).view(np.uint32).astype(np.uint64) << np.uint64(32)
        key[part] |= np.asarray(y[part], np.float32).view(np.uint32)
        key[part] ^= np.asarray(gene[part]).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    key.sort()
    return int(np.count_nonzero(key[1:] == key[:-1]))


@dataclass
class TranscriptIndex:
    """Transcripts in image pixel coordinates, sorted by block of a regular grid.

    Attributes
    ----------
    x, y
        Pixel coordinates (pixel centres at integers), sorted by block.
    gene
        Integer code into ``genes``; -1 for excluded (control) genes.
    order
        Position of each sorted transcript in the original points table (row order of the
        concatenated partitions), so results can be written back.
    genes
        Gene names.
    excluded
        Per gene, whether it matched the control pattern and was excluded.
    block_size
        Edge length of the square indexing grid in pixels.
    shape
        ``(height, width)`` of the image.
    n_total, n_dropped_nan, n_outside
        Counts reported to the user.

    """

    x: np.ndarray
    y: np.ndarray
    gene: np.ndarray
    order: np.ndarray
    genes: pd.Index
    excluded: np.ndarray
    block_size: int
    shape: tuple[int, int]
    starts: np.ndarray
    n_total: int
    n_dropped_nan: int
    n_outside: int
    partition_lengths: np.ndarray

    @property
    def n_genes(self) -> int:
        """Number of genes (including excluded controls)."""
        return len(self.genes)

    def _grid(self) -> tuple[int, int]:
        h, w = self.shape
        return -(-h // self.block_size), -(-w // self.block_size)

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Indices (into the sorted arrays) of transcripts with pixel ``round(y)`` in ``[y0, y1)``
        and ``round(x)`` in ``[x0, x1)``.
        """
        ny, nx = self._grid()
        b = self.block_size
        by0, by1 = max(y0 // b, 0), min(-(-y1 // b), ny)
        bx0, bx1 = max(x0 // b, 0), min(-(-x1 // b), nx)
        parts = []
        for by in range(by0, by1):
            lo, hi = self.starts[by * nx + bx0], self.starts[by * nx + bx1]
            parts.append(np.arange(lo, hi))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        idx = np.concatenate(parts)
        ry = np.rint(self.y[idx])
        rx = np.rint(self.x[idx])
        keep = (ry >= y0) & (ry < y1) & (rx >= x0) & (rx < x1)
        return idx[keep]


def build_transcript_index(
    sdata: SpatialData,
    points_key: str,
    image_key: str,
    *,
    shape: tuple[int, int],
    block_size: int = 1024,
    coordinate_system: str = DEFAULT_CS,
    exclude_pattern: str | None = CONTROL_GENE_PATTERN,
) -> TranscriptIndex:
    """Read the points once into a :class:`TranscriptIndex` aligned to the image's pixel grid.

    Transcripts with NaN/inf coordinates are dropped with a warning; transcripts outside the image
    are kept out of the index (counted in ``n_outside``). Genes matching ``exclude_pattern``
    (vendor negative controls) get code -1.
    """
    points = sdata.points[points_key]
    gene_col = feature_key(sdata, points_key)
    genes = gene_categories(points, gene_col)
    if len(points.columns) == 0:
        raise ValueError(f"Points {points_key!r} have no columns.")
    matrix = points_to_pixel_matrix(sdata, points_key, image_key, coordinate_system=coordinate_system)
    excluded = np.zeros(len(genes), dtype=bool)
    if exclude_pattern:
        rx = re.compile(exclude_pattern)
        excluded = np.array([bool(rx.match(str(g))) for g in genes])

    h, w = shape
    ny, nx = -(-h // block_size), -(-w // block_size)
    # Block ids are sorted with numpy's O(n) radix sort when they fit 16 bits (0 = not indexed).
    block_dtype = np.uint16 if ny * nx < np.iinfo(np.uint16).max else np.uint32
    excluded_codes = np.append(excluded, False)  # code -1 (unknown gene) indexes the appended False
    gene_dtype = np.int16 if len(genes) < np.iinfo(np.int16).max else np.int32  # 2 bytes a transcript

    def _part(df: pd.DataFrame) -> pd.DataFrame:
        """One partition in pixels: x, y, gene code and block (0: NaN/inf or outside; 1-based)."""
        xy = np.c_[df["x"].to_numpy(np.float64), df["y"].to_numpy(np.float64), np.ones(len(df))] @ matrix.T
        codes = pd.Categorical(df[gene_col].astype(str), categories=genes.astype(str)).codes.astype(gene_dtype)
        x, y = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
        rx, ry = np.rint(x), np.rint(y)
        inside = (ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)  # False for NaN
        block = np.zeros(len(df), block_dtype)
        by, bx = (ry[inside] // block_size).astype(block_dtype), (rx[inside] // block_size).astype(block_dtype)
        block[inside] = by * block_dtype(nx) + bx + 1
        return pd.DataFrame({"x": x, "y": y, "g": codes, "b": block, "finite": np.isfinite(x) & np.isfinite(y)})

    meta = {"x": np.float32, "y": np.float32, "g": gene_dtype, "b": block_dtype, "finite": bool}
    parts = list(dask.compute(*points[["x", "y", gene_col]].map_partitions(_part, meta=meta).to_delayed()))
    lengths = np.array([len(f) for f in parts], dtype=np.int64)
    n_total = int(lengths.sum())
    if n_total == 0:
        raise ValueError(f"Points {points_key!r} are empty: nothing to segment.")
    columns = {}
    for name, dtype in meta.items():  # one column at a time, so the copies never coexist
        columns[name] = np.concatenate([f[name].to_numpy() for f in parts]).astype(dtype, copy=False)
        for f in parts:
            del f[name]
    del parts
    x, y, g, block, finite = (columns.pop(name) for name in meta)
    n_nan = n_total - int(np.count_nonzero(finite))
    if n_nan:
        logger.warning("Dropped %d transcripts with NaN/inf coordinates from %r.", n_nan, points_key)
    n_duplicated = count_duplicates(x[finite], y[finite], g[finite]) if n_nan else count_duplicates(x, y, g)
    del finite
    if n_duplicated:
        logger.warning(
            "%d transcripts of %r repeat another one exactly (same position and gene); they are counted as "
            "given. Deduplicate the points first if they come from overlapping tiles or fields of view.",
            n_duplicated,
            points_key,
        )
    g[excluded_codes[g]] = -1
    order = np.argsort(block, kind="stable")
    starts = np.searchsorted(block, np.arange(1, ny * nx + 2, dtype=np.int64), sorter=order)
    n_outside = int(starts[0]) - n_nan
    if starts[0] == n_total:
        raise ValueError(
            f"Points {points_key!r} and image {image_key!r} do not overlap in coordinate system "
            f"{coordinate_system!r}: all {n_total} transcripts fall outside the image."
        )
    if n_outside:
        logger.info("%d transcripts fall outside image %r and are ignored.", n_outside, image_key)
    del block
    order = order[starts[0] :].astype(np.min_scalar_type(n_total))  # argsort's int64, halved
    starts -= starts[0]
    x, y, g = x[order], y[order], g[order]
    release_memory(step_bytes=n_total * (x.itemsize + y.itemsize + g.itemsize + 8))  # + the argsort
    return TranscriptIndex(
        x=x,
        y=y,
        gene=g,
        order=order,
        genes=genes,
        excluded=excluded,
        block_size=block_size,
        shape=(h, w),
        starts=starts,
        n_total=n_total,
        n_dropped_nan=n_nan,
        n_outside=n_outside,
        partition_lengths=lengths,
    )
