"""SSL-CST (built on SCS): transcripts binned on a coarse grid, a point transformer trained without
annotation to say, for each bin, whether it is in a cell and in which direction its cell's centre
lies, and cells traced by following those directions to their sinks.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.genes import gene_lookup, select_genes
from jointseg._core.method_run import start_run
from jointseg._core.utils import sampled_percentiles
from jointseg.models import SSLCSTModel, TransformerConfig
from jointseg.seg.sslcst.infer import predict_sslcst_cells
from jointseg.seg.sslcst.tokens import (
    nucleus_centres,
    token_settings,
)
from jointseg.seg.sslcst.train import (
    SSLCSTParams,
    train_transformer,
    training_set,
)

logger = logging.getLogger("jointseg")


def sslcst(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    model: SSLCSTModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    bin_um: float = 0.5,
    n_neighbours: int = 48,
    radius_um: float = 6.0,
    distance_scale_um: float = 5.0,
    min_gene_counts: int = 10,
    erosion_um: float = 0.5,
    negative_distance_um: float = 15.0,
    dark_quantile: float = 0.5,
    max_samples: int = 20_000,
    validation_fraction: float = 0.2,
    distance_dropout: float = 0.0,
    dim: int = 64,
    layers: int = 8,
    heads: int = 1,
    steps: int = 600,
    batch_size: int = 256,
    lr: float = 1e-3,
    patience: int = 4,
    tile_um: float = 128.0,
    max_tiles: int = 24,
    prior_radius_um: float = 8.0,
    foreground_threshold: float = 0.1,
    stride: int = 2,
    merge_distance_um: float = 1.5,
    min_cell_area_um2: float = 20.0,
    max_hole_area_um2: float = 10.0,
    max_cell_diameter_um: float = 30.0,
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
) -> SpatialData | None:
    """Segment cells with SSL-CST: self-supervised transcript-to-cell directions and flow tracking.

    Transcripts are binned on a grid of ``bin_um``. Each bin becomes a sequence of tokens: itself
    and its ``n_neighbours`` nearest non-empty bins within ``radius_um``, each carrying its
    expression, its position relative to the centre and its signed distance to the nearest nucleus
    centroid (distance minus the nucleus's radius, over ``distance_scale_um``; SSL-CST's released
    code takes the farthest centroid, a bug not reproduced). A pre-LayerNorm transformer with
    bias-free MLPs (:class:`jointseg.models.PointTransformer`) predicts, for the centre bin, one of
    16 directions to its cell's centre and whether it is in a cell.

    Without a ``model``, it is trained on this slide without annotation: positives are bins with
    transcripts inside the nuclei (eroded by ``erosion_um``), labelled with the direction to their
    nucleus centroid; negatives are empty bins outside nuclei, farther than
    ``negative_distance_um`` from every centroid and no brighter than the stain's
    ``dark_quantile``; both are balanced 1:1 and the direction loss is masked for negatives.
    AdamW trains on random batches (rotation/mirror augmentation: token positions and direction
    classes turned together by multiples of 22.5 degrees) with early stopping on the
    rightmost ``validation_fraction`` of the samples (a held-out spatial region).

    Cells are then traced block by block: direction probabilities are multiplied by a prior that
    allows only the directions to nucleus centroids within ``prior_radius_um`` (else 1.25 times
    that, else all), the most likely direction and the foreground are smoothed by two 3 x 3 means,
    bins above ``foreground_threshold`` follow their directions to sinks (stopping where the
    direction turns back), sinks within ``merge_distance_um`` or on one nucleus make one cell,
    small holes are filled and cells under ``min_cell_area_um2`` dropped.

    Parameters
    ----------
    sdata
        SpatialData with the stain, the transcripts and the nuclei.
    image_key, points_key, nuclei_key, channel
        The stain (output pixel grid; the negatives' darkness), transcripts, nuclei labels from
        :func:`jointseg.pp.nuclei`, and the stain channel of a multichannel image.
    model
        A trained :class:`jointseg.models.SSLCSTModel` or the path of a saved one: skip training.
    save_model
        Write the trained model there.
    bin_um, n_neighbours, radius_um, distance_scale_um
        Bins and tokens (see above).
    min_gene_counts
        Genes with fewer transcripts are left out of the expression embedding.
    erosion_um, negative_distance_um, dark_quantile, max_samples
        Sample selection; at most ``max_samples`` positives (and as many negatives).
    validation_fraction
        Held-out share of the samples (by position: the rightmost ones).
    dim, layers, heads
        Transformer width, depth and attention heads.
    steps, batch_size, lr, patience
        Optimiser steps (at most), batch, AdamW learning rate, and evaluations (every 100 steps)
        without improvement before stopping.
    tile_um, max_tiles
        Training tiles holding nuclei, drawn at random.
    distance_dropout
        Share of the training samples whose distance features are zeroed (all their tokens), so
        that the foreground is also learnt from the transcripts: the distance to the nearest
        nucleus alone separates the positives from the negatives, since they are chosen by it. Not
        in the paper; the default 0 is the paper's training. On the real crop, 0.5 assigned fewer
        transcripts at a lower MECR; on synthetic truth the two were equal (see the benchmarks).
    prior_radius_um, foreground_threshold, merge_distance_um, min_cell_area_um2, max_hole_area_um2
        Post-processing (see above).
    stride
        The network runs on every ``stride``-th bin along each axis and its outputs are
        interpolated bilinearly in between (their smoothing spans 5 bins anyway). ``stride=2``
        made inference 3.7 times faster on the real crop, with the same quality there and on
        synthetic truth (see the benchmarks); 1 runs it on every bin, as the paper does.
    max_cell_diameter_um, block_size
        Halo and block edge (pixels) of the whole-slide run.
    device, seed
        Torch device (default: cuda, then mps, then cpu) and seed: same seed and device give the
        same labels.
    key_added, shapes_key, table_key, coordinate_system, overwrite, copy, progress
        As in :func:`jointseg.seg.genesegnet`.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds labels, shapes and a table as the other methods,
    with the parameters and the training log in ``table.uns["jointseg"][key_added]``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.sslcst(sdata, image_key="morphology", points_key="transcripts", layers=2, steps=20,
    ...               negative_distance_um=4.0, progress=False)
    >>> "cell_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    run = start_run(
        sdata, method="SSL-CST", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        at_least_one={"steps": steps, "batch_size": batch_size, "n_neighbours": n_neighbours, "stride": stride},
        device=device, channel=channel, coordinate_system=coordinate_system,
    )  # fmt: skip
    index, px, nuclei, device, stain = run.index, run.pixel_size_um, run.nuclei(), run.device, run.stain(channel)
    model = run.load_model(model, SSLCSTModel)
    train = model is None
    if train:
        bin_size = max(int(round(bin_um / px)), 1)
        codes, lut = select_genes(index, min_gene_counts)
        torch.manual_seed(seed)
        model = SSLCSTModel.new(
            TransformerConfig(n_genes=len(codes), dim=dim, layers=layers, heads=heads),
            genes=[str(g) for g in index.genes[codes]], bin_size=bin_size, pixel_size_um=px,
            n_neighbours=n_neighbours, radius_bins=radius_um / (bin_size * px), distance_scale_um=distance_scale_um,
            device=device,
        )  # fmt: skip
    else:
        lut = gene_lookup(index, model.genes)
    bin_um_used = model.bin_size * px
    centres = nucleus_centres(nuclei, model.bin_size)
    if train:
        rng = np.random.default_rng(seed)
        dark = float(sampled_percentiles(stain, [100 * dark_quantile])[0])
        data = training_set(
            index, stain, nuclei, lut, centres, bin_size=model.bin_size,
            tile=max(int(round(tile_um / bin_um_used)), 8), max_tiles=max_tiles,
            erosion_px=int(round(erosion_um / px)), negative_distance=negative_distance_um / bin_um_used, dark=dark,
            max_per_class=max_samples, validation_fraction=validation_fraction, settings=token_settings(model), rng=rng,
        )  # fmt: skip
        params = SSLCSTParams(
            max_steps=steps, batch_size=batch_size, lr=lr, patience=patience, distance_dropout=distance_dropout
        )
        model.training_log = train_transformer(model, data, params, seed=seed, progress=progress)
        model.training_log.update({"device": device, "n_positive": int(data.samples.foreground.sum())})
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - run.started
    prior_radius = prior_radius_um / bin_um_used
    labels = predict_sslcst_cells(
        index, model, lut, centres, nuclei, block_size=block_size,
        halo_bins=int(np.ceil(max_cell_diameter_um / bin_um_used)), prior_radius=prior_radius, stride=stride,
        flow_kwargs={
            "threshold": foreground_threshold, "merge_distance": merge_distance_um / bin_um_used,
            "max_steps": int(np.ceil(2 * max_cell_diameter_um / bin_um_used)),
            "max_hole_area": int(round(max_hole_area_um2 / bin_um_used**2)),
            "min_area": max(int(round(min_cell_area_um2 / bin_um_used**2)), 1),
        },
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "bin_um": bin_um_used, "n_neighbours": model.n_neighbours,
        "radius_um": model.radius_bins * bin_um_used, "distance_scale_um": model.distance_scale_um,
        "prior_radius_um": prior_radius_um, "foreground_threshold": foreground_threshold, "stride": stride,
        "merge_distance_um": merge_distance_um, "distance_dropout": distance_dropout,
        "min_cell_area_um2": min_cell_area_um2,
        "max_cell_diameter_um": max_cell_diameter_um, "block_size": block_size, "device": device, "seed": seed,
        "network": model.network.config.to_dict(), "training_log": model.training_log,
        "training_seconds": trained_s,
    }  # fmt: skip
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite)  # fmt: skip
    return sdata if copy else None
