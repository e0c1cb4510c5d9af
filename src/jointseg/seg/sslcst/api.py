"""SSL-CST (Wang et al. 2025, built on SCS): cells from a point transformer trained without
annotation to point every bin of transcripts towards its cell's centre.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from spatialdata import SpatialData, deepcopy

from jointseg._core.config import config_dict, resolve_config
from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.docs import d
from jointseg._core.genes import gene_lookup, select_genes
from jointseg._core.method_run import MethodRun, start_run
from jointseg._core.refinement import refine_params
from jointseg.models import SSLCSTModel
from jointseg.seg.sslcst.config import SSLCSTConfig
from jointseg.seg.sslcst.infer import predict_sslcst_cells
from jointseg.seg.sslcst.tokens import nucleus_centres
from jointseg.seg.sslcst.train import train_on_slide

d.params["sslcst_tuned"] = """\
steps, patience
    Optimiser steps (at most), and evaluations (every 100 steps) without improvement before stopping.
negative_distance_um
    Negative samples are empty bins at least this far from every nucleus centroid. None: 15 um,
    or, in tissue too packed to hold as many such bins as there are positives, the distance that
    does, but not less than a typical cell's reach on this slide (logged as a warning; the
    distance used is in the training log).
distance_dropout
    Share of the training samples whose distance features are zeroed (all their tokens), so that
    the foreground is also learnt from the transcripts: the distance to the nearest nucleus alone
    separates the positives from the negatives, since they are chosen by it. Not in the paper; the
    default 0 is the paper's training. On the real crop, 0.5 assigned fewer transcripts at a lower
    MECR; on synthetic truth the two were equal (see the benchmarks)."""


def _slide_bins(run: MethodRun, model: SSLCSTModel | None, config: SSLCSTConfig):
    """The genes (the model's, or those with enough transcripts), their lookup, the bin size and the
    nucleus centres on that bin grid.
    """
    if model is None:
        codes, lut = select_genes(run.index, config.min_gene_counts)
        genes, bin_size = (
            [str(g) for g in run.index.genes[codes]],
            max(int(round(config.bin_um / run.pixel_size_um)), 1),
        )
    else:
        genes, lut, bin_size = model.genes, gene_lookup(run.index, model.genes), model.bin_size
    return genes, lut, bin_size, nucleus_centres(run.nuclei(), bin_size)


@d.dedent
def train_sslcst(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    steps: int = 600,
    patience: int = 4,
    negative_distance_um: float | None = None,
    distance_dropout: float = 0.0,
    config: SSLCSTConfig | None = None,
    device: str | None = None,
    seed: int = 0,
    coordinate_system: str = DEFAULT_CS,
    progress: bool = True,
    **legacy: Any,
) -> SSLCSTModel:
    """Train SSL-CST on a slide without annotations (see :func:`sslcst`, which calls this).

    Parameters
    ----------
    %(inputs)s
    %(channel)s
    %(sslcst_tuned)s
    %(config)s
    device, seed, coordinate_system, progress
        As in :func:`sslcst`.

    Returns
    -------
    The trained :class:`jointseg.models.SSLCSTModel`, with its early-stopping log.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> model = jg.seg.train_sslcst(sdata, steps=20, negative_distance_um=4.0, config=jg.seg.SSLCSTConfig(layers=2),
    ...                             progress=False)
    >>> model.training_log["steps"]
    20

    """
    config = resolve_config(SSLCSTConfig, config, legacy, method="train_sslcst")
    run = start_run(
        sdata, method="sslcst", title="SSL-CST",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key, outputs=None,
        at_least_one={"steps": steps}, device=device, channel=channel, coordinate_system=coordinate_system,
    )  # fmt: skip
    genes, lut, bin_size, centres = _slide_bins(run, None, config)
    return train_on_slide(
        run, channel=channel, config=config, genes=genes, lut=lut, bin_size=bin_size, centres=centres, steps=steps,
        patience=patience, negative_distance_um=negative_distance_um, distance_dropout=distance_dropout, seed=seed,
        progress=progress,
    )  # fmt: skip


@d.dedent
def sslcst(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    model: SSLCSTModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    steps: int = 600,
    patience: int = 4,
    negative_distance_um: float | None = None,
    distance_dropout: float = 0.0,
    prior_radius_um: float | None = None,
    stride: int = 2,
    adaptive: bool = True,
    min_cell_area_um2: float = 20.0,
    max_cell_diameter_um: float | None = None,
    refine: bool | Mapping[str, Any] = True,
    config: SSLCSTConfig | None = None,
    block_size: int = 2048,
    device: str | None = None,
    seed: int = 0,
    key_added: str = CELL_LABELS_KEY,
    shapes_key: str = CELL_SHAPES_KEY,
    table_key: str = TABLE_KEY,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
    progress: bool = True,
    **legacy: Any,
) -> SpatialData | None:
    """Segment cells with SSL-CST: self-supervised transcript-to-cell directions and flow tracking.

    Transcripts are binned on a grid of ``config.bin_um``. Each bin becomes a sequence of tokens: itself
    and its ``config.n_neighbours`` nearest non-empty bins within ``config.radius_um``, each carrying its
    expression, its position relative to the centre and its signed distance to the nearest nucleus
    centroid (distance minus the nucleus's radius, over ``config.distance_scale_um``; SSL-CST's released
    code takes the farthest centroid, a bug not reproduced). A pre-LayerNorm transformer with
    bias-free MLPs (:class:`jointseg.models.PointTransformer`) predicts, for the centre bin, one of
    16 directions to its cell's centre and whether it is in a cell.

    Without a ``model``, it is trained on this slide without annotation: positives are bins with
    transcripts inside the nuclei (eroded by ``config.erosion_um``), labelled with the direction to their
    nucleus centroid; negatives are empty bins outside nuclei, farther than
    ``negative_distance_um`` from every centroid and no brighter than the stain's
    ``config.dark_quantile``; both are balanced 1:1 and the direction loss is masked for negatives.
    AdamW trains on random batches (rotation/mirror augmentation: token positions and direction
    classes turned together by multiples of 22.5 degrees) with early stopping on the
    rightmost ``config.validation_fraction`` of the samples (a held-out spatial region).

    Cells are then traced block by block: direction probabilities are multiplied by a prior that
    allows only the directions to nucleus centroids within ``prior_radius_um`` (else 1.25 times
    that, else all), the most likely direction and the foreground are smoothed by two 3 x 3 means,
    bins above ``config.foreground_threshold`` follow their directions to sinks (stopping where the
    direction turns back), sinks within ``config.merge_distance_um`` or on one nucleus make one cell,
    small holes are filled and cells under ``min_cell_area_um2`` dropped.

    Parameters
    ----------
    %(inputs)s
    %(channel)s
    %(model)s
    %(sslcst_tuned)s
    prior_radius_um
        Directions are allowed only towards nucleus centroids within this radius (see above).
        None: how far a typical cell reaches from its nucleus's centre on this slide (median
        nucleus radius plus the extent estimated from the transcripts; 8 um before 0.2).
    stride
        The network runs on every ``stride``-th bin along each axis and its outputs are
        interpolated bilinearly in between (their smoothing spans 5 bins anyway). ``stride=2``
        made inference 3.7 times faster on the real crop, with the same quality there and on
        synthetic truth (see the benchmarks); 1 runs it on every bin, as the paper does.
    adaptive
        Run the network on every ``2 * stride``-th bin first, and on the ``stride`` lattice only
        where those outputs disagree (no transcripts on one side, foreground or direction turning);
        elsewhere interpolate. On the real crop it ran the network on 59% of the lattice and gave
        the same cells as ``adaptive=False`` (mean IoU 0.99).
    min_cell_area_um2, max_cell_diameter_um
        Smallest cell kept; largest expected cell (the halo between blocks; None: estimated from
        the nuclei and their extents, at least 30 um).
    %(config)s
    %(run)s
    %(refine)s
    %(outputs)s
    %(progress)s

    Returns
    -------
    %(segmentation_returns)s

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.sslcst(sdata, image_key="morphology", points_key="transcripts", steps=20, negative_distance_um=4.0,
    ...               config=jg.seg.SSLCSTConfig(layers=2), progress=False)
    >>> "cell_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    config = resolve_config(SSLCSTConfig, config, legacy, method="sslcst")
    run = start_run(
        sdata, method="sslcst", title="SSL-CST",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        at_least_one={"steps": steps, "stride": stride}, device=device, channel=channel,
        coordinate_system=coordinate_system,
    )  # fmt: skip
    model = run.load_model(model, SSLCSTModel)
    genes, lut, bin_size, centres = _slide_bins(run, model, config)
    if model is None:
        model = train_on_slide(
            run, channel=channel, config=config, genes=genes, lut=lut, bin_size=bin_size, centres=centres,
            steps=steps, patience=patience, negative_distance_um=negative_distance_um,
            distance_dropout=distance_dropout, seed=seed, progress=progress,
        )  # fmt: skip
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - run.started
    bin_um = model.bin_size * run.pixel_size_um
    max_cell_diameter_um = run.largest_cell_um(max_cell_diameter_um, at_least=30.0)
    if prior_radius_um is None:
        prior_radius_um = run.cell_extent().typical_reach_um()
    labels = predict_sslcst_cells(
        run.index, model, lut, centres, run.nuclei(), block_size=block_size,
        halo_bins=int(np.ceil(max_cell_diameter_um / bin_um)), prior_radius=prior_radius_um / bin_um, stride=stride,
        coarse=2 if adaptive else 1, flow_kwargs={
            "threshold": config.foreground_threshold, "merge_distance": config.merge_distance_um / bin_um,
            "max_steps": int(np.ceil(2 * max_cell_diameter_um / bin_um)),
            "max_hole_area": int(round(config.max_hole_area_um2 / bin_um**2)),
            "min_area": max(int(round(min_cell_area_um2 / bin_um**2)), 1),
        },
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "steps": steps, "patience": patience, "negative_distance_um": negative_distance_um,
        "distance_dropout": distance_dropout, "prior_radius_um": prior_radius_um, "stride": stride,
        "adaptive": adaptive, "min_cell_area_um2": min_cell_area_um2, "max_cell_diameter_um": max_cell_diameter_um,
        "block_size": block_size, "device": run.device, "seed": seed, "config": config_dict(config), "bin_um": bin_um,
        "n_neighbours": model.n_neighbours, "radius_um": model.radius_bins * bin_um,
        "distance_scale_um": model.distance_scale_um, "network": model.network.config.to_dict(),
        "training_log": model.training_log, "training_seconds": trained_s, **run.extent_params(),
    }  # fmt: skip
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite, refine=refine_params(refine, seed=seed),
               largest_cell_um=max_cell_diameter_um)  # fmt: skip
    return sdata if copy else None
