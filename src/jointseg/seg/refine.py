"""Refine any segmentation by each cell's own expression."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import DEFAULT_CS, NUCLEI_KEY, POINTS_CELL_ID
from jointseg._core.docs import d
from jointseg._core.method_run import start_run
from jointseg._core.rasterize import shapes_to_labels
from jointseg._core.refinement import RefineParams, weights_by_code
from jointseg._core.utils import check_new_key, labels_2d, resolve_key

logger = logging.getLogger("jointseg")


@d.dedent
def refine(
    sdata: SpatialData,
    *,
    labels_key: str | None = None,
    shapes_key: str | None = None,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    grow_um: float | None = None,
    smoothness: float = 0.85,
    background_border: float = 0.75,
    bin_um: float = 1.0,
    core_um: float = 1.5,
    prior_counts: float = 30.0,
    ambient: float = 0.1,
    n_types: int = 15,
    temperature: float = 3.0,
    anneal_sweeps: int = 20,
    max_sweeps: int = 30,
    em_iterations: int = 1,
    em_tolerance: float = 0.01,
    min_density_per_um2: float = 0.15,
    density_sigma_um: float = 2.0,
    max_cell_diameter_um: float | None = None,
    gene_weights: Mapping[str, float] | pd.Series | None = None,
    seed: int = 0,
    key_added: str = "refined_labels",
    boundaries_key: str = "refined_boundaries",
    table_key: str = "refined_table",
    block_size: int = 2048,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Refine a segmentation so that each cell holds the transcripts its own expression explains.

    Works on any cells: jointseg's, a vendor's read by spatialdata-io, sopa's or Proseg's, given as
    labels on the stain's pixel grid or as polygons. Each cell's profile is learnt from its core (its
    nucleus, or its deepest pixels when it has none, grown by ``core_um``), shrunk toward its type's
    profile; the background has its own (see :mod:`jointseg._core.expression_model`). The cells
    are first grown by ``grow_um`` into the transcript foreground; then ~1 um bins move between
    neighbouring cells and the background where that raises the likelihood of their transcripts
    plus a smoothness reward (a short annealing, then greedy sweeps), never cutting a cell in two
    nor taking its nucleus (see :mod:`jointseg._core.bin_solver`). Runs per block with a halo.

    Parameters
    ----------
    sdata
        SpatialData with the cells to refine, the stain they were segmented on and the transcripts.
    labels_key
        The cell labels to refine, on the stain's pixel grid (may be omitted when there is only one
        labels element besides ``nuclei_key`` and no ``shapes_key``).
    shapes_key
        Or the cell polygons to refine (e.g. a vendor's ``cell_boundaries``), rasterised on the
        stain's pixel grid block by block; polygon ``i`` (row order) becomes cell ``i + 1``.
    image_key, points_key
        The stain (its pixel grid and transformations are the output's) and the transcripts.
    nuclei_key
        Nuclei labels, when present: each cell's anchor is its part inside a nucleus.
    grow_um
        How far a cell may grow beyond its input outline, in microns. None: 1.25 times the 95th
        percentile of the cells' reach beyond their nuclei, estimated from the transcripts (needs
        ``nuclei_key``; 0 without it).
    smoothness
        Cost per pair of neighbouring bins across a border, in log-likelihood units: higher gives
        rounder cells, lower follows single transcripts.
    background_border
        Cost of a border between a cell and the background, relative to one between two cells. At
        1 a gap between two cells costs twice the border they would share, so thin gaps close: on
        every synthetic tissue the cells then face the background along far less of their border
        than the true cells do, and small cells come out too large. At 0.5 each cell pays only for
        its own perimeter and gaps open too readily. 0.75, between them, came closest to the true
        gaps and gave the best cells on every synthetic tissue (docs: "Gaps between cells"); 1 keeps
        more transcripts in packed tissue (95% instead of 91% on the Xenium breast crop).
    bin_um
        Bin edge in microns: the unit a boundary moves by (rounded to whole pixels).
    core_um
        A cell's core is its anchor grown by this much inside the cell.
    prior_counts
        Pseudo-transcripts of its type's profile added to each cell's core.
    ambient
        Share of the background's profile in every cell's.
    n_types
        Clusters that give the type profiles.
    temperature, anneal_sweeps
        The annealing: sweeps that sample each bin's label, from ``temperature`` down to 0.05, so
        boundaries can cross a bin that alone would not move. 0 sweeps: greedy only.
    max_sweeps
        Most greedy sweeps per block after the annealing.
    em_iterations, em_tolerance
        Solves in all: after each but the last, the profiles and rates are fitted again to the
        refined cells (EM), until fewer than ``em_tolerance`` of the transcripts change cell between
        two solves. 1: one solve, from the input cells' counts.
    min_density_per_um2, density_sigma_um
        The transcript foreground cells may grow into (as :func:`jointseg.seg.expand_nuclei`).
    max_cell_diameter_um
        Largest cell, for the halo between blocks (None: estimated from the nuclei and transcripts,
        at least 30 um).
    gene_weights
        How much each gene's evidence counts, by gene name, e.g. a method's gene scores
        (``sdata["table"].var["jg_cid_score"]``): a transcript adds its weight times its log
        probability under a cell. Genes not given, or given NaN, take the median weight; the weights
        are scaled to a mean of 1 over the transcripts. None: every gene counts the same.
    seed
        Seed of the type clustering and the annealing; the same seed gives the same cells whatever
        the block size.
    key_added, boundaries_key, table_key
        Names of the refined labels, their polygons and their table.
    block_size
        Block edge in pixels; memory is bounded by it.
    coordinate_system
        Coordinate system that links the elements and gives the units.
    overwrite
        Replace existing elements of these names.
    copy
        Work on a copy and return it, leaving ``sdata`` unchanged.

    Returns
    -------
    %(segmentation_returns)s

    The transcripts' ``jg_cell_id`` column (the input cells', when jointseg made them) is replaced
    by the refined cells'; the input's key and what the expression model found are in
    ``uns["jointseg"][key_added]``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
    >>> jg.seg.refine(sdata, labels_key="cell_labels")
    >>> "refined_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    params = RefineParams(
        bin_um=bin_um, smoothness=smoothness, background_border=background_border, core_um=core_um,
        prior_counts=prior_counts, ambient=ambient, n_types=n_types, max_sweeps=max_sweeps,
        em_iterations=em_iterations, em_tolerance=em_tolerance, min_density_per_um2=min_density_per_um2,
        density_sigma_um=density_sigma_um, seed=seed, temperature=temperature, anneal_sweeps=anneal_sweeps,
    )  # fmt: skip
    if grow_um is not None and grow_um < 0:
        raise ValueError(f"grow_um must be >= 0, got {grow_um}.")
    source = _input_key(sdata, labels_key, shapes_key, nuclei_key)
    if source in (key_added, boundaries_key):
        raise ValueError(f"key_added and boundaries_key must differ from the input ({source!r}).")
    points_key = resolve_key(sdata, "points", points_key)
    for key in (key_added, boundaries_key, table_key):
        check_new_key(sdata, key, overwrite=overwrite)
    if POINTS_CELL_ID in sdata.points[points_key].columns:
        logger.info("refine: the transcripts' %r column is replaced by the refined cells.", POINTS_CELL_ID)
        sdata.points[points_key] = sdata.points[points_key].drop(columns=POINTS_CELL_ID)
    run = start_run(
        sdata, method="refine", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, boundaries_key, table_key], overwrite=overwrite, needs_nuclei=False,
        index_block_size=min(block_size, 1024), coordinate_system=coordinate_system,
    )  # fmt: skip
    stain_shape = tuple(int(s) for s in run.stain().shape)
    if shapes_key is not None:
        cells = shapes_to_labels(sdata, shapes_key, run.image_key, shape=stain_shape, block_size=block_size,
                                 coordinate_system=coordinate_system)  # fmt: skip
    else:
        cells = labels_2d(sdata, source).data
        if tuple(cells.shape) != stain_shape:
            raise ValueError(
                f"Labels {source!r} {tuple(cells.shape)} are not on the pixel grid of image {run.image_key!r} "
                f"{stain_shape}; pass them as polygons (shapes_key) or resample them onto the stain's grid."
            )
    has_nuclei = nuclei_key in sdata.labels
    if has_nuclei and tuple(run.nuclei().shape) != stain_shape:
        raise ValueError(f"Nuclei {nuclei_key!r} are not on the pixel grid of image {run.image_key!r}.")
    params_out = {
        "labels_key": labels_key, "shapes_key": shapes_key, "nuclei_key": nuclei_key if has_nuclei else None,
    }  # fmt: skip
    run.finish(
        cells, params=params_out, key_added=key_added, shapes_key=boundaries_key, table_key=table_key,
        overwrite=overwrite, refine=params, grow_um=grow_um,
        largest_cell_um=run.largest_cell_um(max_cell_diameter_um, at_least=30.0),
        gene_weights=weights_by_code(gene_weights, run.index.genes),
    )  # fmt: skip
    return sdata if copy else None


def _input_key(sdata: SpatialData, labels_key: str | None, shapes_key: str | None, nuclei_key: str) -> str:
    """The key of the cells to refine: ``labels_key``, ``shapes_key``, or the only labels besides the nuclei."""
    if labels_key is not None and shapes_key is not None:
        raise ValueError("Pass labels_key or shapes_key, not both.")
    if shapes_key is not None:
        return resolve_key(sdata, "shapes", shapes_key)
    if labels_key is None:
        candidates = [k for k in sdata.labels if k != nuclei_key]
        if len(candidates) != 1:
            raise ValueError(
                f"Pass labels_key (or shapes_key): the cells to refine (labels found: {list(sdata.labels)})."
            )
        labels_key = candidates[0]
    return resolve_key(sdata, "labels", labels_key)
