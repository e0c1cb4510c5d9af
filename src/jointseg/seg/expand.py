"""Baseline: nuclei grown into the transcript foreground."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask
import numpy as np
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import (
    CELL_LABELS_KEY,
    CELL_SHAPES_KEY,
    DEFAULT_CS,
    NUCLEI_KEY,
    TABLE_KEY,
)
from jointseg._core.docs import d
from jointseg._core.expansion import expand_block
from jointseg._core.method_run import start_run
from jointseg._core.refinement import refine_params
from jointseg._core.tiling import BlockGrid, array_from_blocks


@d.dedent
def expand_nuclei(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    max_distance_um: float | None = None,
    min_density_per_um2: float = 0.15,
    density_sigma_um: float = 2.0,
    refine: bool | Mapping[str, Any] = False,
    seed: int = 0,
    key_added: str = CELL_LABELS_KEY,
    shapes_key: str = CELL_SHAPES_KEY,
    table_key: str = TABLE_KEY,
    block_size: int = 2048,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Baseline segmentation: grow each nucleus as far as its cell reaches, into the transcript foreground.

    How far each cell reaches beyond its nucleus is estimated from the transcripts around it (see
    :func:`jointseg._core.cell_extent.estimate_cell_extent`: dense epithelium, sparse stroma and
    isolated cultured cells each get their own), or set for all with ``max_distance_um``. Every pixel
    within reach of a nucleus goes to the nearest nucleus (a Voronoi split between neighbours), but
    only where the local transcript density (all genes, blurred with ``density_sigma_um``) reaches
    ``min_density_per_um2``, so cells do not swallow empty tissue. Runs per block with a halo of the
    largest reach, which makes it exact across block borders.

    Parameters
    ----------
    %(inputs)s
    max_distance_um
        Growth from every nucleus border, in microns. None: each nucleus's own extent, estimated
        from the transcripts (logged; recorded in ``uns``). 8 um was the fixed default before 0.2.
    min_density_per_um2
        Transcript-density floor of the foreground; 0 grows into every pixel.
    density_sigma_um
        Blur of the transcript density.
    refine
        Refine the grown cells by each cell's own expression (:func:`jointseg.seg.refine` with its
        defaults, or with the options of a dict such as ``{"background_border": 1.0}``): the joint
        pipeline. False (default): the stain-only baseline every joint method is compared with.
    seed
        Seed of the refinement.
    block_size
        Block edge in pixels; memory is bounded by it.
    %(outputs)s

    Returns
    -------
    %(segmentation_returns)s

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
    >>> sdata["table"].n_obs == int(sdata["nuclei"].max())
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    run = start_run(
        sdata, method="expand_nuclei", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite, index_block_size=block_size,
        grid_key=nuclei_key, coordinate_system=coordinate_system,
    )  # fmt: skip
    nuclei, px, index = run.nuclei(), run.pixel_size_um, run.index
    shape = tuple(int(s) for s in nuclei.shape)
    distance = run.expansion_px(max_distance_um)
    reach = float(np.max(distance, initial=0.0))
    if np.ndim(distance):
        distance = dask.delayed(distance)  # one copy in the graph, not one per block
    grid = BlockGrid(shape=shape, block_size=block_size, halo=int(np.ceil(reach)) + 2)
    min_count = min_density_per_um2 * px**2
    labels = array_from_blocks(
        grid,
        lambda blk: dask.delayed(expand_block, pure=True)(
            nuclei[blk.ext_slices], index, blk.ext, blk.core, distance, density_sigma_um / px, min_count
        ),
        dtype=np.int64,
    )
    params = {
        "nuclei_key": nuclei_key,
        "max_distance_um": max_distance_um,
        **run.extent_params(),
        "min_density_per_um2": min_density_per_um2,
        "density_sigma_um": density_sigma_um,
    }
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite, refine=refine_params(refine, seed=seed),
               largest_cell_um=run.largest_cell_um(None, at_least=30.0) if refine else 30.0)  # fmt: skip
    return sdata if copy else None
