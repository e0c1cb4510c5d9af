"""Tissue-like synthetic data with known ground-truth nuclei, cells and transcript assignment."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from spatialdata import SpatialData
from spatialdata.models import Labels2DModel, TableModel
from spatialdata.transformations import Scale

from jointseg._core.constants import DEFAULT_CS
from jointseg.datasets._regimes import REGIMES, paint_ellipse, regime_layout
from jointseg.datasets._xenium import xenium_like_sdata


def _place_centres(rng: np.random.Generator, shape, n, min_dist, margin) -> np.ndarray:
    h, w = shape
    centres: list[np.ndarray] = []
    for _ in range(n * 200):
        if len(centres) == n:
            break
        c = rng.uniform([margin, margin], [h - margin, w - margin])
        if not centres or np.min(np.hypot(*(np.asarray(centres) - c).T)) >= min_dist:
            centres.append(c)
    return np.asarray(centres)


def _paint_nuclei(rng, shape, centres, radius_range) -> np.ndarray:
    """Elliptic nuclei; where two ellipses overlap, the pixel goes to the one it is deeper inside,
    so neighbours touch along a shared border.
    """
    labels = np.zeros(shape, np.int32)
    depth = np.full(shape, np.inf)
    for i, (cy, cx) in enumerate(centres, start=1):
        a = rng.uniform(*radius_range)
        b = a * rng.uniform(0.65, 1.0)
        theta = rng.uniform(0, np.pi)
        paint_ellipse(labels, depth, i, (cy, cx), a, b, theta)
    return labels


def _grow_cells(rng, nuclei, n, expansion_range) -> np.ndarray:
    """Grow each nucleus by its own random distance; a pixel goes to the cell whose border is
    deepest behind it (a weighted Voronoi), so cells have unequal sizes and are not plain expansions.
    """
    h, w = nuclei.shape
    cells = np.zeros_like(nuclei)
    best = np.full(nuclei.shape, np.inf)
    slices = ndi.find_objects(nuclei)
    for i, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        d = rng.uniform(*expansion_range)
        pad = int(np.ceil(d)) + 1
        y0, y1 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, h)
        x0, x1 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, w)
        dist = ndi.distance_transform_edt(nuclei[y0:y1, x0:x1] != i)
        score = dist - d
        win_best = best[y0:y1, x0:x1]
        take = (dist <= d) & (score < win_best)
        cells[y0:y1, x0:x1][take] = i
        win_best[take] = score[take]
    cells[nuclei > 0] = nuclei[nuclei > 0]
    return cells


def synthetic(
    *,
    shape: tuple[int, int] = (512, 512),
    n_cells: int = 60,
    nucleus_radius_px: tuple[float, float] = (7.0, 12.0),
    cell_expansion_px: tuple[float, float] = (5.0, 16.0),
    min_centre_distance_px: float = 17.0,
    n_cell_types: int = 3,
    genes_per_type: int = 5,
    n_noise_genes: int = 5,
    specific_fraction: float = 0.8,
    transcripts_per_cell: float = 150.0,
    background_transcripts: int = 400,
    brightness_gradient: float = 0.6,
    noise_sd: float = 0.03,
    pixel_size: float = 0.2125,
    regime: str | None = None,
    transcripts_per_um2: float = 0.8,
    spill_um: float = 0.8,
    seed: int = 0,
) -> SpatialData:
    """Synthetic tissue with known truth: stain, cell-type-specific transcripts, nuclei and cells.

    Nuclei are ellipses (neighbours may touch) stained with uneven brightness, blur and noise.
    Each cell grows from its nucleus by its own random distance. Each cell has a type; its
    transcripts fall uniformly inside the cell body, a ``specific_fraction`` of them from its type's
    genes and the rest from shared noise genes. Background transcripts are scattered everywhere.

    Parameters
    ----------
    shape
        ``(height, width)`` in pixels.
    n_cells
        Number of cells requested (fewer if they do not fit at ``min_centre_distance_px``).
    nucleus_radius_px, cell_expansion_px
        Ranges of the nucleus semi-major axis and of the growth from nucleus to cell border.
    n_cell_types, genes_per_type, n_noise_genes
        Genes ``T{t}_{k}`` are specific to type ``t``; genes ``noise_{k}`` are shared.
    specific_fraction
        Fraction of a cell's transcripts drawn from its type's genes.
    transcripts_per_cell
        Mean transcripts of a cell of average area (Poisson, proportional to area).
    background_transcripts
        Transcripts scattered uniformly over the image, from all genes (truth cell 0).
    brightness_gradient
        Stain brightness falls linearly by this fraction from left to right.
    noise_sd
        Standard deviation of the additive Gaussian noise (stain scaled to [0, 1]).
    pixel_size
        Microns per pixel; the image gets ``Scale(pixel_size)`` and the points are in microns.
    regime
        A tissue with realistic, type-specific cell sizes and shapes given in microns (so any
        ``pixel_size`` gives the same tissue): ``"lymphoid"`` (small round cells reaching 1-2.5 um
        beyond their nuclei), ``"epithelium"`` (large cells packed in sheets, 5-9 um),
        ``"stroma"`` (elongated cells, 2-5 um along their short axis), ``"cultured"`` (isolated
        cells with 16-22 um nuclei reaching 9-15 um) or ``"tumour"`` (epithelial, lymphoid and
        stromal types side by side); see :mod:`jointseg.datasets._regimes`. Cells are off-centre
        ellipses around their nuclei, not expansions of them. ``nucleus_radius_px``,
        ``cell_expansion_px``, ``min_centre_distance_px`` and ``transcripts_per_cell`` are then
        unused; each cell holds ``transcripts_per_um2`` per um2 on average, the background
        ``background_transcripts`` per 10,000 um2, and every transcript lands ``spill_um`` (standard
        deviation) away from where it was made, across cell borders too (its true cell stays the
        one that made it). None: the original generator (sizes in pixels, cells grown from nuclei).
    transcripts_per_um2, spill_um
        See ``regime``.
    seed
        Random seed.

    Returns
    -------
    SpatialData with image ``"morphology"``, points ``"transcripts"`` (``feature_name``,
    ``true_cell_id``), labels ``"true_nuclei"`` and ``"true_cells"``, and table ``"truth"``
    (one row per true cell, ``obs["cell_type"]``).

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15, seed=1)
    >>> sorted(sdata.labels)
    ['true_cells', 'true_nuclei']

    """
    rng = np.random.default_rng(seed)
    if regime is None:
        margin = nucleus_radius_px[1]
        centres = _place_centres(rng, shape, n_cells, min_centre_distance_px, margin)
        nuclei = _paint_nuclei(rng, shape, centres, nucleus_radius_px)
        cells = _grow_cells(rng, nuclei, len(centres), cell_expansion_px)
        n = len(centres)
        cell_type = rng.integers(0, n_cell_types, size=n)
    else:
        if regime not in REGIMES:
            raise ValueError(f"Unknown regime {regime!r}; choose one of {sorted(REGIMES)}.")
        layout = regime_layout(rng, shape, n_cells, REGIMES[regime], n_cell_types=n_cell_types, pixel_size=pixel_size)
        nuclei, cells, cell_type = layout.nuclei, layout.cells, layout.cell_type
        n = len(cell_type)
        background_transcripts = int(round(background_transcripts * shape[0] * shape[1] * pixel_size**2 / 10_000))

    # Stain: textured nuclei of varying brightness under a left-to-right illumination gradient.
    brightness = np.r_[0.0, rng.uniform(0.45, 1.0, size=n)]
    texture = 1.0 + 0.15 * ndi.gaussian_filter(rng.standard_normal(shape), 1.5)
    stain = brightness[nuclei] * texture + 0.06 * (cells > 0)
    stain = ndi.gaussian_filter(stain, 1.2)
    gradient = 1.0 - brightness_gradient * np.linspace(0, 1, shape[1])[np.newaxis, :]
    stain = stain * gradient + 0.04 + noise_sd * rng.standard_normal(shape)
    image = (np.clip(stain, 0, 1) * 4000).astype(np.uint16)

    genes = [f"T{t}_{k}" for t in range(n_cell_types) for k in range(genes_per_type)]
    genes += [f"noise_{k}" for k in range(n_noise_genes)]
    specific = [np.arange(t * genes_per_type, (t + 1) * genes_per_type) for t in range(n_cell_types)]
    noise_genes = np.arange(n_cell_types * genes_per_type, len(genes))

    areas = np.bincount(cells.ravel(), minlength=n + 1)
    mean_area = areas[1:].mean()
    flat = np.argsort(cells.ravel(), kind="stable")
    starts = np.searchsorted(cells.ravel()[flat], np.arange(n + 2))
    xs, ys, gs, ids = [], [], [], []
    for i in range(1, n + 1):
        pix = flat[starts[i] : starts[i + 1]]
        if regime is None:
            k = rng.poisson(transcripts_per_cell * areas[i] / mean_area)
        else:
            k = rng.poisson(transcripts_per_um2 * areas[i] * pixel_size**2) if len(pix) else 0
        chosen = rng.choice(pix, size=k)
        is_specific = rng.random(k) < specific_fraction
        pool_specific = specific[cell_type[i - 1]]
        gene = (
            np.where(is_specific, rng.choice(pool_specific, size=k), rng.choice(noise_genes, size=k))
            if len(noise_genes)
            else rng.choice(pool_specific, size=k)
        )
        ys.append(chosen // shape[1] + rng.uniform(-0.5, 0.5, k))
        xs.append(chosen % shape[1] + rng.uniform(-0.5, 0.5, k))
        gs.append(gene)
        ids.append(np.full(k, i))
    kb = background_transcripts
    ys.append(rng.uniform(-0.5, shape[0] - 0.5, kb))
    xs.append(rng.uniform(-0.5, shape[1] - 0.5, kb))
    gs.append(rng.integers(0, len(genes), kb))
    ids.append(np.zeros(kb, dtype=int))
    y_px, x_px = np.concatenate(ys), np.concatenate(xs)
    if regime is None:
        # A transcript on a border pixel can round into the neighbour: truth is the pixel it lands in.
        true_id = cells[
            np.clip(np.rint(y_px).astype(int), 0, shape[0] - 1),
            np.clip(np.rint(x_px).astype(int), 0, shape[1] - 1),
        ]
    else:
        # Transcripts drift from where they were made; truth is the cell that made them.
        true_id = np.concatenate(ids)
        y_px = np.clip(y_px + rng.normal(0, spill_um / pixel_size, len(y_px)), -0.5, shape[0] - 0.5)
        x_px = np.clip(x_px + rng.normal(0, spill_um / pixel_size, len(x_px)), -0.5, shape[1] - 0.5)
    transcripts = pd.DataFrame(
        {
            "x": x_px * pixel_size,
            "y": y_px * pixel_size,
            "z": np.zeros(len(x_px)),
            "feature_name": pd.Categorical(np.asarray(genes)[np.concatenate(gs)], categories=genes),
            "true_cell_id": true_id.astype(np.int32),
        }
    )
    sdata = xenium_like_sdata(image, transcripts, pixel_size=pixel_size, chunks=max(shape))
    transform = {DEFAULT_CS: Scale([pixel_size, pixel_size], axes=("y", "x"))}
    sdata["true_nuclei"] = Labels2DModel.parse(nuclei, dims=("y", "x"), transformations=transform)
    sdata["true_cells"] = Labels2DModel.parse(cells, dims=("y", "x"), transformations=transform)
    obs = pd.DataFrame(
        {
            "cell_id": np.arange(1, n + 1),
            "region": pd.Categorical(["true_cells"] * n),
            "cell_type": pd.Categorical([f"type_{t}" for t in cell_type]),
        },
        index=[str(i) for i in range(1, n + 1)],
    )
    truth = ad.AnnData(obs=obs)
    sdata["truth"] = TableModel.parse(truth, region="true_cells", region_key="region", instance_key="cell_id")
    return sdata
