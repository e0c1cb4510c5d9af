"""GeneSegNet (Wang et al. 2023): cells from the nuclei stain and the RNA location map with a
residual U-Net, self-trained on the slide from the nuclei prior, applied tile by tile.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from spatialdata import SpatialData, deepcopy

from jointseg._core.config import config_dict, resolve_config
from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.docs import d
from jointseg._core.method_run import start_run
from jointseg._core.refinement import refine_params
from jointseg._core.resample import grid_factor
from jointseg.models import GeneSegNetModel, UNetConfig
from jointseg.seg.genesegnet.config import GeneSegNetConfig
from jointseg.seg.genesegnet.infer import instance_params, predict_cells, slide_inputs
from jointseg.seg.genesegnet.train import train_on_slide

_CENTRES = ("nuclei", "votes")


def _config(config: GeneSegNetConfig | UNetConfig | None, legacy: dict[str, Any], method: str) -> GeneSegNetConfig:
    if isinstance(config, UNetConfig):  # 0.1: config was the network's shape
        warnings.warn(f"{method}: pass the network's shape as config=GeneSegNetConfig(network=...).", FutureWarning,
                      stacklevel=3)  # fmt: skip
        config = GeneSegNetConfig(network=config)
    return resolve_config(GeneSegNetConfig, config, legacy, method=method)


def _check_centres(centres: str) -> None:
    if centres not in _CENTRES:
        raise ValueError(f"centres must be 'nuclei' or 'votes', got {centres!r}.")


@d.dedent
def train_genesegnet(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    steps: int = 150,
    max_rounds: int = 3,
    prior_expansion_um: float | None = None,
    min_cell_area_um2: float = 20.0,
    centres: Literal["nuclei", "votes"] = "nuclei",
    config: GeneSegNetConfig | None = None,
    device: str | None = None,
    seed: int = 0,
    coordinate_system: str = DEFAULT_CS,
    progress: bool = True,
    **legacy: Any,
) -> GeneSegNetModel:
    """Train GeneSegNet on a slide without annotations (see :func:`genesegnet`, which calls this).

    Training reads up to ``config.max_tiles`` tiles of ``config.tile_size`` px (drawn at random
    among the tiles that hold nuclei), builds their inputs and round-0 labels once, and trains on
    random crops.

    Parameters
    ----------
    %(inputs)s
    %(channel)s
    steps, max_rounds, prior_expansion_um, min_cell_area_um2, centres
        As in :func:`genesegnet`.
    %(config)s
    device, seed
        As in :func:`genesegnet`.
    coordinate_system
        Coordinate system that links the elements and gives the units.
    progress
        Show progress bars.

    Returns
    -------
    The trained :class:`jointseg.models.GeneSegNetModel`; its ``training_log`` has, per round, the
    loss at the start and the end, the number of cells, and the IoU with the previous labels.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=6)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> config = jg.seg.GeneSegNetConfig(network=jg.models.UNetConfig(widths=(8, 16)))
    >>> model = jg.seg.train_genesegnet(sdata, steps=2, max_rounds=1, config=config, progress=False)
    >>> len(model.training_log["rounds"])
    1

    """
    _check_centres(centres)
    config = _config(config, legacy, "train_genesegnet")
    run = start_run(
        sdata, method="genesegnet", title="GeneSegNet",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key, outputs=None,
        at_least_one={"steps": steps, "max_rounds": max_rounds}, device=device, channel=channel,
        coordinate_system=coordinate_system,
    )  # fmt: skip
    return train_on_slide(
        run, channel=channel, config=config, steps=steps, max_rounds=max_rounds, prior_expansion_um=prior_expansion_um,
        min_cell_area_um2=min_cell_area_um2, centres=centres, seed=seed, progress=progress,
    )  # fmt: skip


@d.dedent
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
    prior_expansion_um: float | None = None,
    min_cell_area_um2: float = 20.0,
    max_cell_diameter_um: float | None = None,
    refine: bool | Mapping[str, Any] = True,
    centres: Literal["nuclei", "votes"] = "nuclei",
    config: GeneSegNetConfig | None = None,
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
    """Segment cells with GeneSegNet: a residual U-Net on the nuclei stain and the RNA location map.

    Without ``model``, the network is first trained on this slide without annotations
    (:func:`train_genesegnet`): the labels of round 0 are the nuclei grown by ``prior_expansion_um``
    into the transcript foreground; each round trains, predicts, fills holes, drops small cells and
    smooths each cell with a level set, and the result is the next round's labels, until
    consecutive rounds agree (mean best-match IoU > ``config.stop_iou``) or ``max_rounds``. The
    paper trains for hours on a GPU (AdamW, lr 1e-3, weight decay 1e-5, batch 8, 3 rounds from
    scratch); the default here is ``steps=150`` per round on 128 px crops, which takes a few minutes
    on 2 CPU cores for the 2400 x 1800 px demo crop, continuing from the previous round's weights.

    The network predicts a cell probability and, per pixel, the offset to its cell's centre (the
    paper's Eq. 4). It runs on a grid of ``config.working_pixel_size_um`` (0.5 um: slides with
    finer pixels are sampled onto it, the fields back onto the slide's pixels), so cells span the
    same pixels on every platform. Inference runs block by block: each block averages the fields of the
    overlapping ``config.window`` px windows (on one global window grid, so blocks agree with a
    whole-image run), and cells are built from the stitched fields by centre voting, with a halo of
    ``max_cell_diameter_um`` so cells crossing block borders are neither split nor duplicated.

    Parameters
    ----------
    %(inputs)s
    %(channel)s
    %(model)s
    steps, max_rounds
        Training budget: optimiser steps per round and the round limit.
    prior_expansion_um
        Growth of the nuclei for the round-0 labels. None: each nucleus's extent estimated from
        the transcripts around it (as :func:`expand_nuclei`; 8 um was the fixed default before 0.2).
    min_cell_area_um2, max_cell_diameter_um
        Smallest cell kept; largest expected cell (sets the halo between blocks; None: estimated
        from the nuclei and their extents, the 99th percentile of the cell diameters, at least
        30 um).
    centres
        Cell centres: ``"nuclei"`` (default) sends every foreground pixel to the nucleus nearest
        to where its offset points, so there is one cell per nucleus; ``"votes"`` finds centres as
        peaks of the offset votes (the image and RNA alone, no nuclei needed at inference).
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
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=15)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.genesegnet(sdata, image_key="morphology", points_key="transcripts", steps=5, max_rounds=1,
    ...                   progress=False)
    >>> "cell_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    _check_centres(centres)
    config = _config(config, legacy, "genesegnet")
    run = start_run(
        sdata, method="genesegnet", title="GeneSegNet",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        needs_nuclei=model is None or centres == "nuclei",
        at_least_one={"steps": steps, "max_rounds": max_rounds} if model is None else None, device=device,
        channel=channel, coordinate_system=coordinate_system,
    )  # fmt: skip
    model = run.load_model(model, GeneSegNetModel, resampled=True)
    if model is None:
        model = train_on_slide(
            run, channel=channel, config=config, steps=steps, max_rounds=max_rounds,
            prior_expansion_um=prior_expansion_um, min_cell_area_um2=min_cell_area_um2, centres=centres, seed=seed,
            progress=progress,
        )  # fmt: skip
    if config.window % model.network.multiple:
        raise ValueError(
            f"window must be a multiple of {model.network.multiple} for this network, got {config.window}."
        )
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - run.started
    stain, px = run.stain(channel), run.pixel_size_um
    max_cell_diameter_um = run.largest_cell_um(max_cell_diameter_um, at_least=30.0)
    factor = grid_factor(model.pixel_size_um, px)
    refinement = refine_params(refine, seed=seed)
    with_foreground = refinement is not None and refinement.foreground_weight > 0
    labels, probability = predict_cells(
        stain, slide_inputs(stain, run.index, model.sigma_um / px), model, block_size=block_size,
        halo=int(np.ceil(max_cell_diameter_um / px)), window=config.window, stride=config.stride,
        instance_kwargs=instance_params(px, min_cell_area_um2), nuclei=run.nuclei() if centres == "nuclei" else None,
        spill=run.spill, factor=factor, keep_foreground=with_foreground,
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "steps": steps, "max_rounds": max_rounds, "prior_expansion_um": prior_expansion_um,
        "min_cell_area_um2": min_cell_area_um2, "max_cell_diameter_um": max_cell_diameter_um, "centres": centres,
        "block_size": block_size, "device": run.device, "seed": seed, "config": config_dict(config),
        "sigma_um": model.sigma_um, "network_pixel_size_um": model.pixel_size_um,
        "network": model.network.config.to_dict(), "training_log": model.training_log,
        "training_seconds": trained_s, **run.extent_params(),
    }  # fmt: skip
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite, refine=refinement, largest_cell_um=max_cell_diameter_um,
               foreground=probability if with_foreground else None)  # fmt: skip
    return sdata if copy else None
