"""GeneSegNet (Wang et al. 2023): cells from the nuclei stain and the RNA location map with a
residual U-Net, self-trained on the slide from the nuclei prior, applied tile by tile.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from dataclasses import dataclass
from typing import Literal

import dask
import dask.array as da
import numpy as np
import torch
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.density import location_map, transcript_density
from jointseg._core.expansion import expand_block
from jointseg._core.fields import covering_windows, locked, predict_fields_on_region
from jointseg._core.outputs import check_outputs_free, write_segmentation
from jointseg._core.tiling import BlockGrid, array_from_blocks, segment_blockwise
from jointseg._core.training import tiles_with_nuclei
from jointseg._core.transcripts import TranscriptIndex, build_transcript_index
from jointseg._core.utils import image_2d, labels_2d, pixel_size_um, resolve_key, sampled_percentiles, select_device
from jointseg.models import GeneSegNetModel, UNetConfig
from jointseg.seg.genesegnet.postprocess import instances_from_offsets
from jointseg.seg.genesegnet.train import TrainingParams, self_train

logger = logging.getLogger("jointseg")


@dataclass(frozen=True)
class SlideInputs:
    """Reads GeneSegNet's two input channels on any window of a slide: the stain scaled so its
    global 1st/99th percentiles go to 0/1 (clipped), and the RNA location map, which is already in
    [0, 1] and is used as it is.
    """

    index: TranscriptIndex
    lo: float
    hi: float
    sigma_px: float

    def read(self, stain: np.ndarray, origin: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
        """Inputs ``(2, h, w)`` on ``region``, from ``stain`` whose pixel (0, 0) is ``origin``."""
        y0, y1, x0, x1 = region
        oy, ox = origin
        crop = np.asarray(stain[y0 - oy : y1 - oy, x0 - ox : x1 - ox], dtype=np.float32)
        scaled = np.clip((crop - self.lo) / (self.hi - self.lo), 0, 1)
        return np.stack([scaled, location_map(self.index, region, sigma=self.sigma_px)])


def _slide_inputs(stain, index: TranscriptIndex, sigma_px: float) -> SlideInputs:
    lo, hi = sampled_percentiles(stain, [1, 99])
    return SlideInputs(index, float(lo), float(max(hi, lo + 1e-6)), sigma_px)


def _instance_params(px: float, min_cell_area_um2: float) -> dict:
    """Instance-building settings in pixels for a pixel size ``px`` (microns)."""
    return {
        "min_area": int(round(min_cell_area_um2 / px**2)),
        "min_distance": max(int(round(2.5 / px)), 1),
        "vote_sigma": 0.5 / px,
        "max_vote_distance": 3.0 / px,
    }


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
    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    _check_training_inputs(sdata, nuclei_key, image_key, steps=steps, max_rounds=max_rounds, batch_size=batch_size)
    index = _transcript_index(sdata, points_key, image_key, channel, coordinate_system)
    return _train(
        sdata, index, image_key=image_key, nuclei_key=nuclei_key, channel=channel,
        prior_expansion_um=prior_expansion_um, min_density_per_um2=min_density_per_um2, sigma_um=sigma_um,
        config=config, steps=steps, max_rounds=max_rounds, stop_iou=stop_iou, batch_size=batch_size,
        crop_size=crop_size, lr=lr, tile_size=tile_size, max_tiles=max_tiles, min_cell_area_um2=min_cell_area_um2,
        centres=centres, device=device, seed=seed, coordinate_system=coordinate_system, progress=progress,
    )  # fmt: skip


def _check_training_inputs(sdata: SpatialData, nuclei_key: str, image_key: str, **counts: int) -> None:
    if nuclei_key not in sdata.labels:
        raise KeyError(
            f"No nuclei labels {nuclei_key!r}: run jg.pp.nuclei(sdata, image_key={image_key!r}) first, or pass a "
            f"trained model (available labels: {list(sdata.labels)})."
        )
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")


def _training_defaults() -> dict:
    """Defaults of :func:`train_genesegnet`'s training options (one source for both entry points)."""
    params = inspect.signature(train_genesegnet).parameters
    skip = {"sdata", "points_key"}
    return {k: p.default for k, p in params.items() if k not in skip and p.default is not inspect.Parameter.empty}


def _transcript_index(sdata, points_key, image_key, channel, coordinate_system) -> TranscriptIndex:
    """The transcripts on the stain's pixel grid, read once and shared by training and inference
    (512 px buckets serve both the training tiles and the inference windows).
    """
    shape = tuple(int(s) for s in image_2d(sdata, image_key, channel=channel).shape)
    return build_transcript_index(
        sdata, points_key, image_key, shape=shape, block_size=512, coordinate_system=coordinate_system
    )


def _train(
    sdata: SpatialData,
    index: TranscriptIndex,
    *,
    image_key: str,
    nuclei_key: str,
    channel: int | str | None,
    prior_expansion_um: float,
    min_density_per_um2: float,
    sigma_um: float,
    config: UNetConfig | None,
    steps: int,
    max_rounds: int,
    stop_iou: float,
    batch_size: int,
    crop_size: int,
    lr: float,
    tile_size: int,
    max_tiles: int,
    min_cell_area_um2: float,
    centres: str,
    device: str | None,
    seed: int,
    coordinate_system: str,
    progress: bool,
) -> GeneSegNetModel:
    """:func:`train_genesegnet` on an already built transcript index."""
    device = select_device(device)
    stain = image_2d(sdata, image_key, channel=channel).data
    nuclei = labels_2d(sdata, nuclei_key).data
    shape = tuple(int(s) for s in stain.shape)
    px = pixel_size_um(sdata, image_key, coordinate_system)
    inputs_reader = _slide_inputs(stain, index, sigma_um / px)
    rng = np.random.default_rng(seed)
    tiles = tiles_with_nuclei(nuclei, tile_size, max_tiles=max_tiles, rng=rng, method="GeneSegNet")
    distance = prior_expansion_um / px
    halo = int(np.ceil(distance)) + 2
    inputs, labels, seeds, foreground = [], [], [], []
    min_count = min_density_per_um2 * px**2
    for y0, y1, x0, x1 in tiles:
        ext = (max(y0 - halo, 0), min(y1 + halo, shape[0]), max(x0 - halo, 0), min(x1 + halo, shape[1]))
        nuc = np.asarray(nuclei[ext[0] : ext[1], ext[2] : ext[3]])
        prior = expand_block(nuc, index, ext, (y0, y1, x0, x1), distance, 2.0 / px, min_count)
        labels.append(prior)
        foreground.append(transcript_density(index, (y0, y1, x0, x1), sigma=2.0 / px) >= min_count)
        seeds.append(nuc[y0 - ext[0] : y1 - ext[0], x0 - ext[2] : x1 - ext[2]])
        inputs.append(inputs_reader.read(stain[y0:y1, x0:x1].compute(), (y0, x0), (y0, y1, x0, x1)))
    torch.manual_seed(seed)  # initial weights
    model = GeneSegNetModel.new(config or UNetConfig(), sigma_um=sigma_um, pixel_size_um=px, device=device)
    crop = min(crop_size, tile_size)
    params = TrainingParams(
        steps=steps,
        max_rounds=max_rounds,
        stop_iou=stop_iou,
        batch_size=batch_size,
        crop=crop - crop % model.network.multiple,
        lr=lr,
    )
    logger.info("GeneSegNet: training on %d tiles of %d px (%s), %d steps x up to %d rounds", len(tiles), tile_size,
                device, steps, max_rounds)  # fmt: skip
    log = self_train(
        model, inputs, labels, params, instance_kwargs=_instance_params(px, min_cell_area_um2), seed=seed,
        seeds=seeds if centres == "nuclei" else None, foreground=foreground, progress=progress,
    )  # fmt: skip
    log.update(
        {
            "n_tiles": len(tiles),
            "tile_size": tile_size,
            "prior_expansion_um": prior_expansion_um,
            "centres": centres,
            "device": device,
        }
    )
    model.training_log = log
    return model


def _fields_task(stain, origin, inputs: SlideInputs, core, shape, model: GeneSegNetModel, window: int, stride: int):
    return predict_fields_on_region(
        core,
        shape,
        lambda region: inputs.read(stain, origin, region),
        lambda batch: locked(model.predict, batch),
        window=window,
        stride=stride,
    )


def predict_cells(
    stain,
    inputs: SlideInputs,
    model: GeneSegNetModel,
    *,
    block_size: int,
    halo: int,
    window: int,
    stride: int,
    instance_kwargs: dict,
    nuclei=None,
):
    """Lazy cell labels of a whole slide: fields per block on the global window grid, then instances
    built blockwise on the stitched fields (see :func:`jointseg.seg.segment_blockwise`), with the
    ``nuclei`` (lazy labels) as cell centres if given, else the peaks of the offset votes.
    """
    shape = tuple(int(s) for s in stain.shape)
    index_node = dask.delayed(inputs, pure=True)  # one graph node, not a copy per task
    model_node = dask.delayed(model, pure=True)

    def block_fields(blk):
        y0, y1, x0, x1 = blk.core
        oys = covering_windows(y0, y1, shape[0], window, stride)
        oxs = covering_windows(x0, x1, shape[1], window, stride)
        iy0, iy1 = int(oys[0]), min(int(oys[-1]) + window, shape[0])
        ix0, ix1 = int(oxs[0]), min(int(oxs[-1]) + window, shape[1])
        return dask.delayed(_fields_task, pure=True)(
            stain[iy0:iy1, ix0:ix1], (iy0, ix0), index_node, blk.core, shape, model_node, window, stride
        )

    fields = array_from_blocks(BlockGrid(shape, block_size, 0), block_fields, dtype=np.float32, leading=(3,))
    if nuclei is not None:  # float64 holds label ids exactly up to 2**53
        fields = da.concatenate([fields.astype(np.float64), nuclei.astype(np.float64)[None]], axis=0)
    return segment_blockwise(fields, _instances_block, block_size=block_size, halo=halo, **instance_kwargs)


def _instances_block(fields: np.ndarray, **kwargs) -> np.ndarray:
    seeds = fields[3].astype(np.int64) if len(fields) > 3 else None
    return instances_from_offsets(fields[0], fields[1:3], seeds=seeds, **kwargs)


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
    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    check_outputs_free(sdata, [key_added, shapes_key, table_key], points_key, overwrite=overwrite)
    if centres not in ("nuclei", "votes"):
        raise ValueError(f"centres must be 'nuclei' or 'votes', got {centres!r}.")
    if centres == "nuclei" and nuclei_key not in sdata.labels:
        raise KeyError(
            f"No nuclei labels {nuclei_key!r} (needed with centres='nuclei'): run jg.pp.nuclei(sdata, "
            f"image_key={image_key!r}) first, or pass centres='votes' (available labels: {list(sdata.labels)})."
        )
    if window % 8 or not 0 < stride <= window:
        raise ValueError(f"window must be a multiple of 8 and 0 < stride <= window; got {window}, {stride}.")
    device = select_device(device)
    if model is None:
        _check_training_inputs(sdata, nuclei_key, image_key, steps=steps, max_rounds=max_rounds)
    start = time.perf_counter()
    index = _transcript_index(sdata, points_key, image_key, channel, coordinate_system)
    if model is None:
        options = {
            **_training_defaults(),
            "image_key": image_key, "nuclei_key": nuclei_key, "channel": channel,
            "prior_expansion_um": prior_expansion_um, "sigma_um": sigma_um, "steps": steps, "max_rounds": max_rounds,
            "stop_iou": stop_iou, "min_cell_area_um2": min_cell_area_um2, "centres": centres, "device": device,
            "seed": seed, "coordinate_system": coordinate_system, "progress": progress,
        }  # fmt: skip
        model = _train(sdata, index, **options)
    elif not isinstance(model, GeneSegNetModel):
        model = GeneSegNetModel.load(model, device=device)
    else:
        model.to(device)
    if window % model.network.multiple:
        raise ValueError(f"window must be a multiple of {model.network.multiple} for this network, got {window}.")
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - start
    stain = image_2d(sdata, image_key, channel=channel).data
    px = pixel_size_um(sdata, image_key, coordinate_system)
    if abs(px / model.pixel_size_um - 1) > 0.1:
        logger.warning(
            "GeneSegNet model was trained at %.3f um/px; this image has %.3f um/px (inputs are not resampled).",
            model.pixel_size_um, px,
        )  # fmt: skip
    labels = predict_cells(
        stain,
        _slide_inputs(stain, index, model.sigma_um / px),
        model,
        block_size=block_size,
        halo=int(np.ceil(max_cell_diameter_um / px)),
        window=window,
        stride=stride,
        instance_kwargs=_instance_params(px, min_cell_area_um2),
        nuclei=labels_2d(sdata, nuclei_key).data if centres == "nuclei" else None,
    )
    params = {
        "nuclei_key": nuclei_key,
        "sigma_um": model.sigma_um,
        "min_cell_area_um2": min_cell_area_um2,
        "max_cell_diameter_um": max_cell_diameter_um,
        "centres": centres,
        "window": window,
        "stride": stride,
        "block_size": block_size,
        "device": device,
        "seed": seed,
        "network": model.network.config.to_dict(),
        "training_log": model.training_log,
        "training_seconds": trained_s,
    }
    write_segmentation(
        sdata,
        labels,
        index,
        image_key=image_key,
        points_key=points_key,
        nuclei_key=nuclei_key if nuclei_key in sdata.labels else None,
        labels_key=key_added,
        shapes_key=shapes_key,
        table_key=table_key,
        method="genesegnet",
        params=params,
        coordinate_system=coordinate_system,
        overwrite=overwrite,
    )
    logger.info("GeneSegNet: done in %.1f s (training %.1f s)", time.perf_counter() - start, trained_s)
    return sdata if copy else None
