"""How far cells reach beyond their nuclei, read from the transcripts around the nuclei.

Cytoplasm holds transcripts; the space between cells holds few. Around every nucleus, within its
Voronoi region (the pixels nearer to it than to any other nucleus), the transcripts per unit area
are counted by distance from the nucleus border. Above a background level (the density far from
nuclei, capped at a quarter of the density next to them, so crowded tissue with no empty space
does not mistake cytoplasm for background), the excess transcripts accumulate with distance; the
distance holding 90% of a nucleus's excess, corrected for a uniformly filled disc around it, is
how far its cell reaches. In crowded tissue the Voronoi region ends first and the extent is where
the neighbours start; for sparse or isolated cells it is where the transcripts stop.

Each nucleus's own extent is noisy with ~100 transcripts, so it is shrunk toward the median extent
of its ten nearest nuclei (itself included), and capped at twice that.
The tables are accumulated block by block with a halo of ``max_distance_um`` (each pixel and
transcript counted once, in the block whose core holds it), so the result is exact whatever the
block size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
from numba import njit
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from jointseg._core.tiling import BlockGrid
from jointseg._core.transcripts import TranscriptIndex

logger = logging.getLogger("jointseg")

#: Fraction of a nucleus's excess transcripts its cell is taken to hold.
_QUANTILE = 0.9
#: Excess transcripts at which a nucleus's own extent and its neighbourhood's weigh the same.
_SHRINK_COUNTS = 30.0
#: Nuclei whose extents form a nucleus's neighbourhood level.
_NEIGHBOURS = 10
#: No nucleus's extent exceeds its neighbourhood level by more than this factor.
_MAX_OVER_NEIGHBOURS = 2.0


@dataclass(frozen=True)
class CellExtent:
    """How far cells reach beyond their nuclei (see :func:`estimate_cell_extent`).

    Parameters
    ----------
    global_um
        The slide-wide extent, from the pooled profile of every nucleus.
    per_nucleus_um
        Each nucleus's extent (index = nucleus id; nan for 0 and absent ids), shrunk toward its
        neighbourhood's.
    background_per_um2
        The background transcript density subtracted.
    nucleus_radius_um
        Each nucleus's equivalent radius (index = nucleus id; nan where absent).
    profile
        The pooled profile: ``distance_um`` from the nucleus border, ``density_per_um2``, ``area_um2``.

    """

    global_um: float
    per_nucleus_um: np.ndarray
    background_per_um2: float
    nucleus_radius_um: np.ndarray
    profile: pd.DataFrame

    def largest_cell_um(self, q: float = 0.99) -> float:
        """The ``q`` quantile of the cell diameters (nucleus diameter plus twice its extent): the
        halo a tiled run needs so that cells are not cut.
        """
        diameter = 2 * (self.nucleus_radius_um + self.per_nucleus_um)[1:]
        diameter = diameter[np.isfinite(diameter)]
        return float(np.quantile(diameter, q)) if len(diameter) else float("nan")

    def typical_reach_um(self) -> float:
        """How far a typical cell reaches from its nucleus's centre: median nucleus radius plus the
        slide-wide extent.
        """
        radius = self.nucleus_radius_um[np.isfinite(self.nucleus_radius_um)]
        return float(np.median(radius) if len(radius) else 0.0) + self.global_um

    def summary(self) -> dict[str, float]:
        """Slide-wide extent and the 5th, 50th and 95th percentiles of the per-nucleus ones (microns)."""
        values = self.per_nucleus_um[1:]
        values = values[np.isfinite(values)]
        p5, p50, p95 = np.percentile(values, [5, 50, 95]) if len(values) else (self.global_um,) * 3
        return {"global": self.global_um, "p5": float(p5), "median": float(p50), "p95": float(p95)}


@njit(cache=True, nogil=True)
def _nearest_and_bin(nuclei, feature, y0, y1, x0, x1, bin_px):  # pragma: no cover - compiled
    """For each pixel of the window: the id at its nearest nucleus pixel, and its distance bin
    (``floor((d - 1) / bin_px)``, -1 inside a nucleus), with ``d`` computed as scipy computes it.
    """
    nearest = np.empty((y1 - y0, x1 - x0), nuclei.dtype)
    dbin = np.empty((y1 - y0, x1 - x0), np.int32)
    for y in range(y0, y1):
        for x in range(x0, x1):
            ny, nx = feature[0, y, x], feature[1, y, x]
            nearest[y - y0, x - x0] = nuclei[ny, nx]
            d = np.sqrt(float((y - ny) ** 2 + (x - nx) ** 2))
            dbin[y - y0, x - x0] = np.int32(np.floor((d - 1.0) / bin_px)) if d > 0 else -1
    return nearest, dbin


def _block_tables(nuclei_ext, index: TranscriptIndex, ext, core, n_bins: int, bin_px: float):
    """Per nucleus id seen in the block: transcripts and pixels by distance bin, from the block's core."""
    nuclei_ext = np.asarray(nuclei_ext)
    y0, y1, x0, x1 = core
    cy, cx = slice(y0 - ext[0], y1 - ext[0]), slice(x0 - ext[2], x1 - ext[2])
    # Only the feature transform (nearest nucleus pixel) comes from scipy; the distances are
    # computed for the core alone, binned in the same pass: scipy's float64 distances of the whole
    # extended block and their temporaries took ~60% of the transform's time and memory.
    feature = ndi.distance_transform_edt(nuclei_ext == 0, return_distances=False, return_indices=True)
    nearest, dbin = _nearest_and_bin(nuclei_ext, feature, cy.start, cy.stop, cx.start, cx.stop, bin_px)
    del feature
    # Pixels outside nuclei only: the profile is the cytoplasm's (distance 1 px is the first ring).
    inside = (dbin >= 0) & (dbin < n_bins) & (nearest > 0)
    sel = index.window(y0, y1, x0, x1)
    sel = sel[index.gene[sel] >= 0]
    ty = np.rint(index.y[sel]).astype(np.int64) - y0
    tx = np.rint(index.x[sel]).astype(np.int64) - x0
    t_in = inside[ty, tx]
    ty, tx = ty[t_in], tx[t_in]
    ids = np.unique(nearest[inside])
    if not len(ids):
        return ids, np.zeros((0, n_bins), np.int64), np.zeros((0, n_bins), np.int64), np.zeros((0, 3))
    area = np.bincount(np.searchsorted(ids, nearest[inside]) * n_bins + dbin[inside], minlength=len(ids) * n_bins)
    counts = np.bincount(np.searchsorted(ids, nearest[ty, tx]) * n_bins + dbin[ty, tx], minlength=len(ids) * n_bins)
    # Nucleus pixels of the core: their number and coordinate sums (areas and centres, summed over blocks).
    core_nuclei = nuclei_ext[cy, cx]
    size = int(ids.max()) + 1
    rows = np.arange(y0, y1, dtype=np.float64)
    cols = np.arange(x0, x1, dtype=np.float64)
    nucleus_px = np.stack([
        np.bincount(core_nuclei.ravel(), minlength=size),
        np.bincount(core_nuclei.ravel(), np.broadcast_to(rows[:, None], core_nuclei.shape).ravel(), size),
        np.bincount(core_nuclei.ravel(), np.broadcast_to(cols[None, :], core_nuclei.shape).ravel(), size),
    ], axis=1)[ids]  # fmt: skip
    return ids, counts.reshape(-1, n_bins), area.reshape(-1, n_bins), nucleus_px


def _disc_extent(d_quantile: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Extent of a uniformly filled ring around a disc of ``radius`` whose ``_QUANTILE`` of area
    lies within ``d_quantile`` of the disc.
    """
    return np.sqrt(radius**2 + ((radius + d_quantile) ** 2 - radius**2) / _QUANTILE) - radius


def _quantile_distance(excess: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per row, the distance at which the cumulative excess first reaches ``_QUANTILE`` of its maximum
    (linear within the bin); nan for rows with no excess.
    """
    cumulative = np.cumsum(excess, axis=1)
    total = cumulative.max(axis=1)
    target = _QUANTILE * total
    k = np.argmax(cumulative >= target[:, None], axis=1)
    prev = np.where(k > 0, cumulative[np.arange(len(k)), np.maximum(k - 1, 0)], 0.0)
    step = excess[np.arange(len(k)), k]
    frac = np.clip(np.where(step > 0, (target - prev) / np.where(step > 0, step, 1), 1.0), 0, 1)
    out = edges[k] + frac * (edges[1] - edges[0])
    return np.where(total > 0, out, np.nan)


def _neighbourhood_extent(own, weight, centres, present, global_um: float) -> np.ndarray:
    """Per nucleus, the median extent of its ``_NEIGHBOURS`` nearest nuclei (itself included), pulled
    toward ``global_um`` like one more neighbour: the local level each nucleus's own estimate is
    shrunk toward (a median, so a few large cells do not lift the small ones around them).
    """
    prior = np.full(len(own), global_um)
    ids = np.flatnonzero(present)
    if len(ids) < 2:
        return prior
    k = min(_NEIGHBOURS, len(ids))
    _, near = cKDTree(centres[ids]).query(centres[ids], k=k)
    values = own[ids][near]
    known = np.isfinite(values).sum(axis=1)
    median = np.nanmedian(np.where(known[:, None] > 0, values, global_um), axis=1)
    prior[ids] = (known * median + global_um) / (known + 1)
    return prior


def estimate_cell_extent(
    nuclei,
    index: TranscriptIndex,
    *,
    pixel_size_um: float,
    max_distance_um: float = 30.0,
    bin_um: float = 0.5,
    block_size: int = 2048,
) -> CellExtent:
    """Estimate how far cells reach beyond their nuclei from the transcripts around them.

    Parameters
    ----------
    nuclei
        Nuclei labels (numpy or dask), on the pixel grid of ``index``.
    index
        The transcripts on that grid.
    pixel_size_um
        Microns per pixel.
    max_distance_um
        Farthest distance from a nucleus looked at; also the halo between blocks.
    bin_um
        Width of the distance bins.
    block_size
        Block edge in pixels.

    Returns
    -------
    The extents; ``global_um`` is nan when there are no nuclei or no transcripts near them.

    Examples
    --------
    >>> import jointseg as jg
    >>> from jointseg._core.method_run import start_run
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> run = start_run(sdata, method="doc", image_key=None, points_key=None, nuclei_key="true_nuclei",
    ...                 outputs=None, grid_key="true_nuclei")
    >>> extent = estimate_cell_extent(run.nuclei(), run.index, pixel_size_um=run.pixel_size_um)
    >>> 1.0 < extent.global_um < 4.0  # the synthetic cells reach 1-3.4 um beyond their nuclei
    True

    """
    bin_px = bin_um / pixel_size_um
    n_bins = max(1, int(np.ceil(max_distance_um / bin_um)))
    grid = BlockGrid(tuple(int(s) for s in nuclei.shape), block_size, int(np.ceil(max_distance_um / pixel_size_um)) + 1)
    tasks = [
        dask.delayed(_block_tables)(nuclei[blk.ext_slices], index, blk.ext, blk.core, n_bins, bin_px) for blk in grid
    ]
    parts = dask.compute(*tasks)
    n_ids = max([int(p[0].max()) for p in parts if len(p[0])], default=0) + 1
    counts = np.zeros((n_ids, n_bins), np.float64)
    area = np.zeros((n_ids, n_bins), np.float64)
    moments = np.zeros((n_ids, 3), np.float64)
    for ids, c, a, m in parts:
        np.add.at(counts, ids, c)
        np.add.at(area, ids, a)
        np.add.at(moments, ids, m)
    nucleus_px = moments[:, 0]
    area_um2 = area * pixel_size_um**2
    edges = np.arange(n_bins) * bin_um + pixel_size_um  # distance from the nucleus border
    pooled_counts, pooled_area = counts.sum(axis=0), area_um2.sum(axis=0)
    density = np.divide(pooled_counts, pooled_area, out=np.zeros(n_bins), where=pooled_area > 0)
    profile = pd.DataFrame({"distance_um": edges, "density_per_um2": density, "area_um2": pooled_area})
    empty = np.full(n_ids, np.nan)
    if n_ids <= 1 or pooled_counts.sum() == 0:
        return CellExtent(float("nan"), empty, 0.0, empty, profile)
    near = density[: max(1, int(round(1.0 / bin_um)))].mean()
    measured = pooled_area >= 0.005 * pooled_area.sum()
    background = float(min(density[measured].min(), 0.25 * near))
    radius_um = np.sqrt(nucleus_px / np.pi) * pixel_size_um
    median_radius = float(np.median(radius_um[nucleus_px > 0])) if (nucleus_px > 0).any() else 0.0
    pooled_excess = (pooled_counts - background * pooled_area)[None]
    global_um = float(_disc_extent(_quantile_distance(pooled_excess, edges), np.array([median_radius]))[0])
    excess = counts - background * area_um2
    own = _disc_extent(_quantile_distance(excess, edges), radius_um)
    weight = np.where(np.isfinite(own), np.clip(excess.sum(axis=1), 0, None), 0.0)
    centres = moments[:, 1:] / np.maximum(nucleus_px, 1)[:, None]
    prior = _neighbourhood_extent(own, weight, centres, nucleus_px > 0, global_um)
    per_nucleus = (weight * np.nan_to_num(own) + _SHRINK_COUNTS * prior) / (weight + _SHRINK_COUNTS)
    # A nucleus on the edge of a region whose own nuclei went undetected (out of focus, a blank
    # stain) collects that region's transcripts; no cell reaches more than twice its neighbours'.
    per_nucleus = np.minimum(per_nucleus, _MAX_OVER_NEIGHBOURS * prior)
    per_nucleus[nucleus_px == 0] = np.nan
    radius_um[nucleus_px == 0] = np.nan
    return CellExtent(global_um, per_nucleus, background, radius_um, profile)


def estimated_extent(nuclei, index: TranscriptIndex, *, pixel_size_um: float, block_size: int = 2048) -> CellExtent:
    """:func:`estimate_cell_extent`, logged, with every nucleus given a finite extent.

    Raises
    ------
    ValueError
        If there are no transcripts near the nuclei to estimate from.

    """
    extent = estimate_cell_extent(nuclei, index, pixel_size_um=pixel_size_um, block_size=block_size)
    if len(extent.per_nucleus_um) <= 1:  # no nuclei: nothing grows (the caller says so)
        return CellExtent(np.nan, np.zeros(1), 0.0, np.full(1, np.nan), extent.profile)
    if not np.isfinite(extent.global_um):
        raise ValueError(
            "No transcripts lie near the nuclei, so how far cells reach cannot be estimated: pass max_distance_um."
        )
    per_nucleus = np.where(np.isfinite(extent.per_nucleus_um), extent.per_nucleus_um, extent.global_um)
    summary = extent.summary()
    logger.info(
        "Cells reach %.1f um beyond their nuclei (slide-wide; per nucleus 5-95%%: %.1f-%.1f um), from the transcripts.",
        summary["global"], summary["p5"], summary["p95"],
    )  # fmt: skip
    return CellExtent(
        extent.global_um, per_nucleus, extent.background_per_um2, extent.nucleus_radius_um, extent.profile
    )
