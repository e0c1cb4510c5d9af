"""Tissue regimes for synthetic slides: cell types with their own sizes and shapes, in microns.

Cells are ellipses around their nuclei (off-centre, elongated, oriented with the nucleus), not
expansions of them. Where two cells compete for a pixel it goes to the one it lies deeper inside
(normalised by each cell's own size), so packed cells meet along curved, polygon-like borders,
and a small cell next to a large one keeps its share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import measure


@dataclass(frozen=True)
class CellShape:
    """How one cell type looks, in microns.

    Parameters
    ----------
    nucleus_radius_um
        Range of the nucleus semi-major axis.
    nucleus_aspect
        Range of the nucleus minor/major axis ratio.
    extent_um
        Range of the growth beyond the nucleus along the cell's minor axis.
    elongation
        Range of the cell's major/minor axis ratio.
    spacing_um
        Smallest distance between the centres of two cells of this type.

    """

    nucleus_radius_um: tuple[float, float]
    nucleus_aspect: tuple[float, float]
    extent_um: tuple[float, float]
    elongation: tuple[float, float]
    spacing_um: float


LYMPHOCYTE = CellShape((2.4, 3.0), (0.85, 1.0), (1.0, 2.5), (1.0, 1.15), 8.0)
EPITHELIAL = CellShape((3.5, 5.0), (0.6, 0.9), (5.0, 9.0), (1.0, 1.4), 14.0)
STROMAL = CellShape((4.5, 7.0), (0.3, 0.5), (2.0, 5.0), (2.5, 4.0), 16.0)
CULTURED = CellShape((8.0, 11.0), (0.7, 0.95), (9.0, 15.0), (1.0, 1.4), 42.0)

#: Named regimes: the shape of each cell type (types cycle through the list).
REGIMES: dict[str, tuple[CellShape, ...]] = {
    "lymphoid": (LYMPHOCYTE,),
    "epithelium": (EPITHELIAL,),
    "stroma": (STROMAL,),
    "cultured": (CULTURED,),
    "tumour": (EPITHELIAL, LYMPHOCYTE, STROMAL),
}


@dataclass(frozen=True)
class Layout:
    """Nuclei, cells and cell types of a synthetic slide."""

    nuclei: np.ndarray
    cells: np.ndarray
    cell_type: np.ndarray


def regime_layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_cells: int,
    shapes: tuple[CellShape, ...],
    *,
    n_cell_types: int,
    pixel_size: float,
) -> Layout:
    """Place up to ``n_cells`` cells of ``n_cell_types`` types (type ``t`` shaped by
    ``shapes[t % len(shapes)]``) on a ``shape`` px slide of ``pixel_size`` um/px.
    """
    h, w = shape
    types = rng.integers(0, n_cell_types, size=n_cells * 50)
    spacing = np.array([shapes[t % len(shapes)].spacing_um / pixel_size for t in range(n_cell_types)])
    centres, kinds = [], []
    for t in types:
        if len(centres) == n_cells:
            break
        c = rng.uniform([0, 0], [h, w])
        if centres:
            gap = np.hypot(*(np.asarray(centres) - c).T)
            if np.any(gap < (spacing[t] + spacing[np.asarray(kinds)]) / 2):
                continue
        centres.append(c)
        kinds.append(int(t))
    nuclei = np.zeros(shape, np.int32)
    cells = np.zeros(shape, np.int32)
    nucleus_depth = np.full(shape, np.inf)
    cell_depth = np.full(shape, np.inf)
    for i, ((cy, cx), t) in enumerate(zip(centres, kinds, strict=True), start=1):
        s = shapes[t % len(shapes)]
        a = rng.uniform(*s.nucleus_radius_um) / pixel_size
        b = a * rng.uniform(*s.nucleus_aspect)
        theta = rng.uniform(0, np.pi)
        minor = b + rng.uniform(*s.extent_um) / pixel_size
        major = max(minor * rng.uniform(*s.elongation), a + (minor - b))
        shift = rng.uniform(-0.3, 0.3) * (major - a)  # the nucleus sits off the cell's centre
        ccy, ccx = cy + shift * np.sin(theta), cx + shift * np.cos(theta)
        paint_ellipse(nuclei, nucleus_depth, i, (cy, cx), a, b, theta)
        paint_ellipse(cells, cell_depth, i, (ccy, ccx), major, minor, theta)
    cells[nuclei > 0] = nuclei[nuclei > 0]
    # Keep each cell's piece that holds its nucleus (competition can cut off slivers).
    pieces = measure.label(cells, background=0, connectivity=1)
    kept = np.unique(pieces[nuclei > 0])
    cells[~np.isin(pieces, kept)] = 0
    return Layout(nuclei, cells, np.asarray(kinds, dtype=np.int64))


def paint_ellipse(labels, depth, label, centre, a, b, theta) -> None:
    """Write ``label`` where the ellipse (semi-axes ``a`` along ``theta`` and ``b``) covers a pixel
    more deeply than what ``depth`` says is there, so overlapping shapes meet along a shared border.
    """
    h, w = labels.shape
    cy, cx = centre
    r = int(np.ceil(max(a, b))) + 1
    y0, y1, x0, x1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h), max(int(cx) - r, 0), min(int(cx) + r + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    e = (u / a) ** 2 + (v / b) ** 2
    window = depth[y0:y1, x0:x1]
    take = (e <= 1) & (e < window)
    labels[y0:y1, x0:x1][take] = label
    window[take] = e[take]
