"""GeneSegNet (Wang et al. 2023): cells from the nuclei stain and the RNA location map with a
residual U-Net, self-trained on the slide from the nuclei prior, applied tile by tile.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Literal

import numpy as np
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.method_run import start_run
from jointseg.models import GeneSegNetModel, UNetConfig
from jointseg.seg.genesegnet.infer import instance_params, predict_cells, slide_inputs
from jointseg.seg.genesegnet.train import train_on_slide

logger = logging.getLogger("jointseg")


def train_genesegnet(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    prior_expansion_um: float = 8.0,
    min_density_per_um2: float = 0.15,
    sigma_um: float = 1.4,
    config: UNetConfig | None = None,
    steps: int = 150,
    max_rounds: int = 3,
    stop_iou: float = 0.93,
    batch_size: int = 8,
    crop_size: int = 128,
    lr: float = 1e-3,
    tile_size: int = 512,
    max_tiles: int = 24,
    min_cell_area_um2: float = 20.0,
    centres: Literal["nuclei", "votes"] = "nuclei",
    device: str | None = None,
    seed: int = 0,
    coordinate_system: str = DEFAULT_CS,
    progress: bool = True,
) -> GeneSegNetModel:
    """Train GeneSegNet on a slide without annotations (see :func:`genesegnet`, which calls this).

    Training reads up to ``max_tiles`` tiles of ``tile_size`` px (drawn at random among the tiles
    that hold nuclei), builds their inputs and round-0 labels once, and trains on random crops.

    Parameters
    ----------
    sdata, image_key, points_key, nuclei_key, channel
        As in :func:`genesegnet`.
    prior_expansion_um, min_density_per_um2
        Round-0 labels: nuclei grown by up to ``prior_expansion_um`` where the transcript density
        reaches ``min_density_per_um2`` (as :func:`jointseg.seg.expand_nuclei`).
    sigma_um
        Gaussian width of the RNA location map.
    config
        Network shape (default: widths 32-256 over 4 scales, one residual block per scale).
    steps, max_rounds, stop_iou
        Optimiser steps per round, round limit, and the label-agreement stop.
    batch_size, crop_size, lr
        Crops per step, crop edge in pixels (before scale jitter), and AdamW's peak learning rate
        (one-cycle schedule, weight decay 1e-5).
    tile_size, max_tiles
        Training tiles.
    min_cell_area_um2, centres
        As in :func:`genesegnet`, for the labels rebuilt after each round.
    device, seed, coordinate_system, progress
        As in :func:`genesegnet`.

    Returns
    -------
    The trained :class:`jointseg.models.GeneSegNetModel`; its ``training_log`` has, per round, the
    loss at the start and the end, the number of cells, and the IoU with the previous labels.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=6)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> model = jg.seg.train_genesegnet(sdata, steps=2, max_rounds=1, progress=False,
    ...                                 config=jg.models.UNetConfig(widths=(8, 16)))
    >>> len(model.training_log["rounds"])
    1

    """
    run = start_run(
        sdata, method="GeneSegNet", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key, outputs=None,
        at_least_one={"steps": steps, "max_rounds": max_rounds, "batch_size": batch_size}, device=device,
        channel=channel, coordinate_system=coordinate_system,
    )  # fmt: skip
    return train_on_slide(
        run, channel=channel, prior_expansion_um=prior_expansion_um, min_density_per_um2=min_density_per_um2,
        sigma_um=sigma_um, config=config, steps=steps, max_rounds=max_rounds, stop_iou=stop_iou,
        batch_size=batch_size, crop_size=crop_size, lr=lr, tile_size=tile_size, max_tiles=max_tiles,
        min_cell_area_um2=min_cell_area_um2, centres=centres, seed=seed, progress=progress,
    )  # fmt: skip


def _training_defaults() -> dict:
    """Defaults of :func:`train_genesegnet`'s training options (one source for both entry points)."""
    params = inspect.signature(train_genesegnet).parameters
    skip = {"sdata", "image_key", "points_key", "nuclei_key", "device", "coordinate_system"}
    return {k: p.default for k, p in params.items() if k not in skip and p.default is not inspect.Parameter.empty}


def genesegnet(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    model: GeneSegNetModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    steps: int = 150,
    max_rounds: int = 3,
    stop_iou: float = 0.93,
    prior_expansion_um: float = 8.0,
    sigma_um: float = 1.4,
    min_cell_area_um2: float = 20.0,
    max_cell_diameter_um: float = 30.0,
    centres: Literal["nuclei", "votes"] = "nuclei",
    window: int = 256,
    stride: int = 224,
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
    """Segment cells with GeneSegNet: a residual U-Net on the nuclei stain and the RNA location map.

    Without ``model``, the network is first trained on this slide without annotations
    (:func:`train_genesegnet`): the labels of round 0 are the nuclei grown by ``prior_expansion_um``
    into the transcript foreground; each round trains, predicts, fills holes, drops small cells and
    smooths each cell with a level set, and the result is the next round's labels, until
    consecutive rounds agree (mean best-match IoU > ``stop_iou``) or ``max_rounds``. The paper trains
    for hours on a GPU (AdamW, lr 1e-3, weight decay 1e-5, batch 8, 3 rounds from scratch); the
    default here is ``steps=150`` per round on 128 px crops, which takes a few minutes on 2 CPU
    cores for the 2400 x 1800 px demo crop, continuing from the previous round's weights.

    The network predicts a cell probability and, per pixel, the offset to its cell's centre (the
    paper's Eq. 4). Inference runs block by block: each block averages the fields of the
    overlapping ``window`` px windows (on one global window grid, so blocks agree with a
    whole-image run), and cells are built from the stitched fields by centre voting, with a halo of
    ``max_cell_diameter_um`` so cells crossing block borders are neither split nor duplicated.

    Parameters
    ----------
    sdata
        SpatialData with the stain and the transcripts (and the nuclei, for training).
    image_key, points_key
        The stain (output pixel grid) and the transcripts.
    nuclei_key
        Nuclei labels from :func:`jointseg.pp.nuclei`: the training prior, and the nucleus link
        in the table.
    channel
        Stain channel (index or name) of a multichannel image.
    model
        A trained :class:`jointseg.models.GeneSegNetModel` or the path of a saved one: skip
        training and segment with it.
    save_model
        Write the trained model to this path (see :meth:`jointseg.models.GeneSegNetModel.save`).
    steps, max_rounds, stop_iou
        Training budget: optimiser steps per round, round limit, and the label-agreement stop.
    prior_expansion_um
        Growth of the nuclei for the round-0 labels.
    sigma_um
        Gaussian width of the RNA location map (the paper: 7 px at ~0.2 um/px).
    min_cell_area_um2, max_cell_diameter_um
        Smallest cell kept; largest expected cell (sets the halo between blocks).
    centres
        Cell centres: ``"nuclei"`` (default) sends every foreground pixel to the nucleus nearest
        to where its offset points, so there is one cell per nucleus; ``"votes"`` finds centres as
        peaks of the offset votes (the image and RNA alone, no nuclei needed at inference).
    window, stride
        Inference window and step in pixels (the paper's code: 256 / 240).
    block_size
        Block edge in pixels for whole-slide inference; memory is bounded by it.
    device
        Torch device (default: cuda, then mps, then cpu).
    seed
        Seed of training (crops, augmentation, initial weights): same seed and device give the
        same labels.
    key_added, shapes_key, table_key
        Names of the new labels, shapes and table.
    coordinate_system
        Coordinate system that links the elements and gives the units.
    overwrite, copy
        See :func:`jointseg.pp.nuclei`.
    progress
        Show progress bars.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds labels ``key_added``, shapes ``shapes_key``,
    table ``table_key`` (as :func:`jointseg.tl.aggregate`), a ``cell_id`` column to the points, and
    the parameters and training log in ``table.uns["jointseg"][key_added]``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.genesegnet(sdata, image_key="morphology", points_key="transcripts", steps=5, max_rounds=1,
    ...                   progress=False)
    >>> "cell_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    if centres not in ("nuclei", "votes"):
        raise ValueError(f"centres must be 'nuclei' or 'votes', got {centres!r}.")
    if window % 8 or not 0 < stride <= window:
        raise ValueError(f"window must be a multiple of 8 and 0 < stride <= window; got {window}, {stride}.")
    run = start_run(
        sdata, method="GeneSegNet", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        needs_nuclei=model is None or centres == "nuclei",
        at_least_one={"steps": steps, "max_rounds": max_rounds} if model is None else None, device=device,
        channel=channel, coordinate_system=coordinate_system,
    )  # fmt: skip
    model = run.load_model(model, GeneSegNetModel)
    if model is None:
        options = {
            **_training_defaults(), "channel": channel, "prior_expansion_um": prior_expansion_um, "sigma_um": sigma_um,
            "steps": steps, "max_rounds": max_rounds, "stop_iou": stop_iou, "min_cell_area_um2": min_cell_area_um2,
            "centres": centres, "seed": seed, "progress": progress,
        }  # fmt: skip
        model = train_on_slide(run, **options)
    if window % model.network.multiple:
        raise ValueError(f"window must be a multiple of {model.network.multiple} for this network, got {window}.")
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - run.started
    stain, px = run.stain(channel), run.pixel_size_um
    labels = predict_cells(
        stain, slide_inputs(stain, run.index, model.sigma_um / px), model, block_size=block_size,
        halo=int(np.ceil(max_cell_diameter_um / px)), window=window, stride=stride,
        instance_kwargs=instance_params(px, min_cell_area_um2), nuclei=run.nuclei() if centres == "nuclei" else None,
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "sigma_um": model.sigma_um, "min_cell_area_um2": min_cell_area_um2,
        "max_cell_diameter_um": max_cell_diameter_um, "centres": centres, "window": window, "stride": stride,
        "block_size": block_size, "device": run.device, "seed": seed, "network": model.network.config.to_dict(),
        "training_log": model.training_log, "training_seconds": trained_s,
    }  # fmt: skip
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite)  # fmt: skip
    return sdata if copy else None
