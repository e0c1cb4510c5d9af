"""GeneSegNet's training without annotations: recursive rounds of train -> predict -> refine labels.

Round 0 labels come from the nuclei prior (nuclei grown into the transcript foreground). Each
round trains the network on the current labels (augmented: flips, 90-degree rotations, scale
jitter), predicts on the training tiles, builds instances, fills holes, drops small masks and
smooths every cell with a morphological Chan-Vese level set; the result, kept inside the transcript
foreground that bounded round 0, is the next round's labels.
Rounds stop when consecutive label sets agree (mean best-match IoU above ``stop_iou``).

Deviation from the released code, for a CPU budget: rounds after the first continue from the
previous round's weights instead of retraining from scratch, with the same number of steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import regionprops
from skimage.segmentation import morphological_chan_vese
from torch.nn import functional as F

from jointseg._core.density import transcript_density
from jointseg._core.expansion import expand_block
from jointseg._core.fields import inference_batch, sliding_window_average
from jointseg._core.method_run import MethodRun
from jointseg._core.resample import grid_coordinates, grid_factor, prefilter_sigma, resample, working_shape
from jointseg._core.training import fit, tiles_with_nuclei
from jointseg.metrics._instances import match_instances
from jointseg.models import GeneSegNetModel, ResidualUNet
from jointseg.seg.genesegnet.config import GeneSegNetConfig
from jointseg.seg.genesegnet.infer import instance_params, slide_inputs
from jointseg.seg.genesegnet.postprocess import centre_offsets, instances_from_offsets

logger = logging.getLogger("jointseg")


@dataclass(frozen=True)
class TrainingParams:
    """Self-training settings (see :func:`jointseg.seg.genesegnet`)."""

    steps: int = 150
    max_rounds: int = 3
    stop_iou: float = 0.93
    batch_size: int = 8
    crop: int = 128
    scale_jitter: tuple[float, float] = (0.75, 1.25)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    level_set_iterations: int = 5
    window: int = 256
    stride: int = 224


@dataclass
class TileTargets:
    """Training targets of one tile: foreground, centre offsets (pixels), and where offsets count."""

    foreground: np.ndarray
    offsets: np.ndarray
    offset_weight: np.ndarray

    @classmethod
    def from_labels(cls, labels: np.ndarray, anchors: np.ndarray | None = None) -> TileTargets:
        """Targets of a labelled tile: offsets point to each cell's centre (the centroid of its
        ``anchors`` pixels, e.g. its nucleus, if any; see :func:`centre_offsets`). Cells cut by the
        tile edge get no offset target (their centre is unknown).
        """
        edge_ids = np.unique(np.concatenate([labels[[0, -1], :].ravel(), labels[:, [0, -1]].ravel()]))
        weight = (labels > 0) & ~np.isin(labels, edge_ids[edge_ids > 0])
        offsets = centre_offsets(labels, anchors)
        return cls((labels > 0).astype(np.float32), offsets, weight.astype(np.float32))


def rotate_offsets(offsets: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate an ``(..., 2, H, W)`` offset field like ``torch.rot90(image, k, dims=(-2, -1))``:
    the grid turns and so does every ``(dy, dx)`` vector.
    """
    field = torch.rot90(offsets, k, dims=(-2, -1))
    dy, dx = field.unbind(-3)
    for _ in range(k % 4):
        dy, dx = -dx, dy
    return torch.stack([dy, dx], dim=-3)


def augmented_batch(
    inputs: list[np.ndarray], targets: list[TileTargets], rng: np.random.Generator, params: TrainingParams
) -> tuple[torch.Tensor, ...]:
    """One batch of random crops with scale jitter, 90-degree rotations and flips, and their targets
    transformed consistently (offsets are scaled, rotated and flipped with the image).
    """
    xs, fgs, offs, ws = [], [], [], []
    size = params.crop
    for _ in range(params.batch_size):
        t = int(rng.integers(len(inputs)))
        _, h, w = inputs[t].shape
        side = int(min(round(size * rng.uniform(*params.scale_jitter)), h, w))
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        win = (slice(y, y + side), slice(x, x + side))
        tg = targets[t]
        xi = torch.from_numpy(inputs[t][(slice(None), *win)])[None]
        oi = torch.from_numpy(tg.offsets[(slice(None), *win)])[None] * (size / side)
        fi = torch.from_numpy(np.stack([tg.foreground[win], tg.offset_weight[win]]))[None]
        xi = F.interpolate(xi, size=(size, size), mode="bilinear", align_corners=False)
        oi = F.interpolate(oi, size=(size, size), mode="bilinear", align_corners=False)
        fi = F.interpolate(fi, size=(size, size), mode="nearest")
        k = int(rng.integers(4))
        xi, oi, fi = torch.rot90(xi, k, dims=(-2, -1)), rotate_offsets(oi, k), torch.rot90(fi, k, dims=(-2, -1))
        if rng.random() < 0.5:
            xi, oi, fi = xi.flip(-1), oi.flip(-1), fi.flip(-1)
            oi[:, 1] = -oi[:, 1]
        xs.append(xi)
        offs.append(oi)
        fgs.append(fi[:, :1])
        ws.append(fi[:, 1:])
    return torch.cat(xs), torch.cat(fgs), torch.cat(offs), torch.cat(ws)


def loss_fn(out: torch.Tensor, fg: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE on the probability logit plus MSE of the scaled offsets on cell pixels."""
    bce = F.binary_cross_entropy_with_logits(out[:, :1], fg)
    err = ((out[:, 1:] - offsets / ResidualUNet.OFFSET_SCALE) ** 2).sum(1, keepdim=True)
    return bce + (err * weight).sum() / weight.sum().clamp(min=1.0)


def train_round(
    model: GeneSegNetModel,
    inputs: list[np.ndarray],
    labels: list[np.ndarray],
    params: TrainingParams,
    rng: np.random.Generator,
    *,
    desc: str,
    progress: bool,
    anchors: list[np.ndarray] | None = None,
) -> list[float]:
    """Train for ``params.steps`` steps on the tiles; returns the loss of every step."""
    anchors = anchors or [None] * len(labels)
    targets = [TileTargets.from_labels(lab, anc) for lab, anc in zip(labels, anchors, strict=True)]
    net = model.network

    def step_loss() -> torch.Tensor:
        x, fg, off, w = (t.to(model.device) for t in augmented_batch(inputs, targets, rng, params))
        out = net(x.contiguous(memory_format=torch.channels_last))
        return loss_fn(out.float(), fg, off, w)

    log = fit(net, step_loss, steps=params.steps, lr=params.lr, weight_decay=params.weight_decay,
              device=model.device, desc=desc, progress=progress)  # fmt: skip
    return log.losses


def smooth_cells(labels: np.ndarray, probability: np.ndarray, *, iterations: int, margin: int = 4) -> np.ndarray:
    """Level-set smoothing of each cell's own mask: morphological Chan-Vese (region term on the
    cell probability, where other cells count as background; curvature smoothing), started from the
    mask. A cell keeps only its own pixels and gains only unassigned ones of probability > 0.5:
    smoothing must not grow cells into the background round after round.
    """
    if iterations <= 0:
        return labels
    out = np.zeros_like(labels)
    h, w = labels.shape
    for region in regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        y0, x0, y1, x1 = max(y0 - margin, 0), max(x0 - margin, 0), min(y1 + margin, h), min(x1 + margin, w)
        crop = labels[y0:y1, x0:x1]
        own = crop == region.label
        image = np.where((crop == 0) | own, probability[y0:y1, x0:x1], 0.0)
        smooth = morphological_chan_vese(image, num_iter=iterations, init_level_set=own, smoothing=1).astype(bool)
        gain = (crop == 0) & (probability[y0:y1, x0:x1] > 0.5)
        claim = smooth & (own | gain) & (out[y0:y1, x0:x1] == 0)
        out[y0:y1, x0:x1][claim] = region.label
    return out


def mean_best_iou(previous: list[np.ndarray], current: list[np.ndarray]) -> float:
    """Mean over the previous round's cells of their best IoU with a current cell."""
    best = []
    for a, b in zip(previous, current, strict=True):
        ids = np.unique(a[a > 0])
        pairs = match_instances(b, a)
        best.append(pairs.groupby("true")["iou"].max().reindex(ids).fillna(0.0).to_numpy())
    values = np.concatenate(best) if best else np.array([])
    return float(values.mean()) if values.size else 0.0


def self_train(
    model: GeneSegNetModel,
    inputs: list[np.ndarray],
    labels: list[np.ndarray],
    params: TrainingParams,
    *,
    instance_kwargs: dict,
    seed: int,
    seeds: list[np.ndarray] | None = None,
    foreground: list[np.ndarray] | None = None,
    progress: bool = True,
) -> dict:
    """Recursive self-training rounds on training tiles; returns the training log.

    ``seeds`` (one label image per tile, e.g. nuclei) are the cells' centres: offsets are trained
    to point to them, and they anchor the cells when labels are rebuilt. ``foreground`` (one mask
    per tile) bounds the rebuilt cells: without it the foreground of a network trained on its own
    output grows round after round (measured on the real crop: 90% -> 96% -> 99% of the tiles).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    log = {"rounds": [], "params": {k: v for k, v in vars(params).items()}, "converged": False}
    for rnd in range(params.max_rounds):
        start = time.perf_counter()
        losses = train_round(
            model,
            inputs,
            labels,
            params,
            rng,
            desc=f"GeneSegNet round {rnd + 1}/{params.max_rounds}",
            progress=progress,
            anchors=seeds,
        )
        new_labels = []
        for i, x in enumerate(inputs):
            fields = sliding_window_average(
                x, model.predict, window=params.window, stride=params.stride, batch_size=inference_batch(model.device)
            )
            tile_seeds = None if seeds is None else seeds[i]
            cells = instances_from_offsets(fields[0], fields[1:], seeds=tile_seeds, **instance_kwargs)
            if foreground is not None:  # cells stay where the transcripts are, as in round 0
                cells = np.where(foreground[i], cells, 0)
            new_labels.append(smooth_cells(cells, fields[0], iterations=params.level_set_iterations))
        iou = mean_best_iou(labels, new_labels)
        entry = {
            "round": rnd + 1,
            "loss_first": float(np.mean(losses[: max(len(losses) // 10, 1)])),
            "loss_last": float(np.mean(losses[-max(len(losses) // 10, 1) :])),
            "label_iou_with_previous": iou,
            "n_cells": int(sum(int(lab.max()) for lab in new_labels)),
            "foreground_fraction": float(np.mean([(lab > 0).mean() for lab in new_labels])),
            "seconds": time.perf_counter() - start,
        }
        log["rounds"].append(entry)
        logger.info(
            "GeneSegNet round %d: loss %.3f -> %.3f, %d cells, IoU with previous labels %.3f (%.0f s)",
            entry["round"], entry["loss_first"], entry["loss_last"], entry["n_cells"], iou, entry["seconds"],
        )  # fmt: skip
        labels = new_labels
        if iou > params.stop_iou:
            log["converged"] = True
            break
    log["params"]["scale_jitter"] = list(params.scale_jitter)
    return log


def train_on_slide(
    run: MethodRun,
    *,
    channel: int | str | None,
    config: GeneSegNetConfig,
    steps: int,
    max_rounds: int,
    prior_expansion_um: float | None,
    min_cell_area_um2: float,
    centres: str,
    seed: int,
    progress: bool,
) -> GeneSegNetModel:
    """Self-train a new GeneSegNet on the slide of ``run`` (see :func:`jointseg.seg.train_genesegnet`):
    round-0 labels on up to ``config.max_tiles`` tiles holding nuclei, then :func:`self_train`.
    """
    device, index, px, nuclei, stain = run.device, run.index, run.pixel_size_um, run.nuclei(), run.stain(channel)
    sigma_um, tile_size, crop_size = config.sigma_um, config.tile_size, config.crop_size
    min_count = config.min_density_per_um2 * px**2
    shape = tuple(int(s) for s in stain.shape)
    inputs_reader = slide_inputs(stain, index, sigma_um / px)
    rng = np.random.default_rng(seed)
    # The network's grid (see GeneSegNetConfig.working_pixel_size_um): tiles are cut on the slide
    # and sampled onto it, labels by their nearest pixel.
    working = config.working_pixel_size_um
    factor = 1.0 if working is None else grid_factor(max(px, working), px)
    tiles = tiles_with_nuclei(nuclei, int(round(tile_size * factor)), max_tiles=config.max_tiles, rng=rng,
                              method="GeneSegNet")  # fmt: skip
    distance = run.expansion_px(prior_expansion_um)
    halo = int(np.ceil(np.max(distance, initial=0.0))) + 2
    inputs, labels, seeds, foreground = [], [], [], []
    for y0, y1, x0, x1 in tiles:
        ext = (max(y0 - halo, 0), min(y1 + halo, shape[0]), max(x0 - halo, 0), min(x1 + halo, shape[1]))
        nuc = np.asarray(nuclei[ext[0] : ext[1], ext[2] : ext[3]])
        tile_labels = [
            expand_block(nuc, index, ext, (y0, y1, x0, x1), distance, 2.0 / px, min_count),
            transcript_density(index, (y0, y1, x0, x1), sigma=2.0 / px) >= min_count,
            nuc[y0 - ext[0] : y1 - ext[0], x0 - ext[2] : x1 - ext[2]],
        ]
        tile_inputs = inputs_reader.read(stain[y0:y1, x0:x1].compute(), (y0, x0), (y0, y1, x0, x1))
        if factor != 1:
            hw, ww = working_shape((y1 - y0, x1 - x0), factor)
            ys, xs = grid_coordinates(0, hw, factor), grid_coordinates(0, ww, factor)
            tile_labels = [resample(a, ys, xs, order=0) for a in tile_labels]
            tile_inputs = resample(tile_inputs, ys, xs, order=1, sigma=prefilter_sigma(factor))
        for out, value in zip((labels, foreground, seeds), tile_labels, strict=True):
            out.append(value)
        inputs.append(tile_inputs)
    torch.manual_seed(seed)  # initial weights
    model = GeneSegNetModel.new(config.network, sigma_um=sigma_um, pixel_size_um=px * factor, device=device)
    crop = min(crop_size, tile_size)
    params = TrainingParams(
        steps=steps,
        max_rounds=max_rounds,
        stop_iou=config.stop_iou,
        batch_size=config.batch_size,
        crop=crop - crop % model.network.multiple,
        lr=config.lr,
        window=config.window,
        stride=config.stride,
    )
    logger.info("GeneSegNet: training on %d tiles of %d px at %.3g um/px (%s), %d steps x up to %d rounds",
                len(tiles), tile_size, model.pixel_size_um, device, steps, max_rounds)  # fmt: skip
    log = self_train(
        model, inputs, labels, params, instance_kwargs=instance_params(model.pixel_size_um, min_cell_area_um2),
        seed=seed,
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
