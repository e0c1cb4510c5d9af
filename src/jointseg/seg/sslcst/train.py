"""SSL-CST's training set (the samples of :mod:`jointseg.seg.sslcst.samples` on tiles holding nuclei,
with their tokens) and the network's training with early stopping on a held-out spatial region.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from scipy import sparse
from torch.nn import functional as F

from jointseg._core.aggregation import nucleus_counts
from jointseg._core.expression_model import ExpressionModel, fit_expression_model
from jointseg._core.genes import sample_bins
from jointseg._core.method_run import MethodRun
from jointseg._core.training import fit, tiles_with_nuclei
from jointseg._core.transcripts import TranscriptIndex
from jointseg._core.utils import sampled_percentiles
from jointseg.models import SSLCSTModel, TransformerConfig
from jointseg.seg.sslcst.config import SSLCSTConfig
from jointseg.seg.sslcst.samples import Samples, balance, erode_labels, select_samples, tied_cytoplasm
from jointseg.seg.sslcst.tokens import (
    BinTable,
    Neighbourhoods,
    NucleusCentres,
    token_geometry,
    token_settings,
    tokens_of,
)

logger = logging.getLogger("jointseg")


@dataclass(frozen=True)
class TrainingSet:
    """Samples with their tokens (rows of ``table``) and the held-out validation mask."""

    samples: Samples
    tokens: Neighbourhoods
    table: BinTable
    validation: np.ndarray
    negative_distance: float
    n_cytoplasm_available: int = 0


@dataclass(frozen=True)
class SSLCSTParams:
    """Optimiser settings of :func:`train_transformer`."""

    max_steps: int = 600
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    eval_every: int = 100
    patience: int = 4
    max_validation: int = 4096
    distance_dropout: float = 0.0


def augment(position: np.ndarray, direction: np.ndarray, rng: np.random.Generator, n: int = 16):
    """Rotate a batch's token positions by a random multiple of the class width (shifting the
    direction classes by as many) and mirror them left-right at random; per centre bin.
    """
    b = len(direction)
    turns = rng.integers(0, n, size=b)
    flip = rng.random(b) < 0.5
    angle = turns * 2 * np.pi / n
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    dy, dx = position[..., 0], position[..., 1]
    ry, rx = s * dx + c * dy, c * dx - s * dy  # (dx, dy) rotated by +angle
    rx = np.where(flip[:, None], -rx, rx)
    turned = np.mod(direction + turns, n)
    turned = np.where(flip, np.mod(n // 2 - 1 - turned, n), turned)
    return np.stack([ry, rx], -1).astype(np.float32), np.where(direction >= 0, turned, -1)


def _loss(
    model: SSLCSTModel,
    data: TrainingSet,
    rows: np.ndarray,
    rng: np.random.Generator | None = None,
    distance_dropout: float = 0.0,
) -> torch.Tensor:
    """Foreground BCE plus direction cross-entropy on the positives. With ``rng``, the batch is
    augmented and the distance features of a ``distance_dropout`` share of its samples are zeroed.
    """
    batch = data.tokens.batch(data.table, rows)
    direction = data.samples.direction[rows]
    if rng is not None:
        batch.position, direction = augment(batch.position, direction, rng)
        if distance_dropout:
            dropped = rng.random(len(rows))[:, None] < distance_dropout
            batch.distance = np.where(dropped, 0.0, batch.distance).astype(np.float32)
    target_dir = torch.from_numpy(direction).to(model.device)
    target_fg = torch.from_numpy(data.samples.foreground[rows]).to(model.device)
    logits = model.network(**batch.tensors(model.device))
    loss = F.binary_cross_entropy_with_logits(logits[:, -1], target_fg)
    learn = target_dir >= 0
    if learn.any():
        loss = loss + F.cross_entropy(logits[learn, :-1], target_dir[learn])
    return loss


def train_transformer(
    model: SSLCSTModel, data: TrainingSet, params: SSLCSTParams, *, seed: int, progress: bool
) -> dict:
    """Train with AdamW on random balanced batches; every ``eval_every`` steps, the loss on the
    held-out region; stop after ``patience`` evaluations without improvement and keep the best
    weights. Returns the log.
    """
    rng = np.random.default_rng(seed)
    train_rows = np.flatnonzero(~data.validation)
    val_rows = np.flatnonzero(data.validation)
    if len(val_rows) > params.max_validation:
        val_rows = np.sort(rng.choice(val_rows, params.max_validation, replace=False))
    start = time.perf_counter()
    tokens = 0

    def step_loss() -> torch.Tensor:
        nonlocal tokens
        rows = rng.choice(train_rows, size=min(params.batch_size, len(train_rows)), replace=False)
        tokens += len(rows) * int(data.tokens.valid[rows].sum(axis=1).max())  # the batch's token columns
        return _loss(model, data, rows, rng, params.distance_dropout)

    log = fit(
        model.network, step_loss, steps=params.max_steps, lr=params.lr, weight_decay=params.weight_decay,
        one_cycle=False, device=model.device, validation_loss=lambda: _validation_loss(model, data, val_rows),
        eval_every=params.eval_every, patience=params.patience, desc="SSL-CST training", progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    logger.info("SSL-CST: %d steps in %.1f s (best validation loss %.4f)", log.steps, seconds,
                log.best_validation_loss)  # fmt: skip
    return {
        "steps": log.steps,
        "stopped_early": log.steps < params.max_steps,
        "best_validation_loss": log.best_validation_loss,
        "history": log.history,
        "n_train": len(train_rows),
        "n_validation": int(data.validation.sum()),
        "training_seconds": seconds,
        "training_tokens_per_second": tokens / max(seconds, 1e-9),
    }


@torch.no_grad()
def _validation_loss(model: SSLCSTModel, data: TrainingSet, rows: np.ndarray) -> float:
    if len(rows) == 0:
        return float("nan")
    model.network.eval()
    total = 0.0
    for chunk in np.array_split(rows, -(-len(rows) // 1024)):
        total += float(_loss(model, data, chunk)) * len(chunk)
    return total / len(rows)


def _bin_means(stain: np.ndarray, bin_size: int, shape: tuple[int, int]) -> np.ndarray:
    """Mean of each bin of a crop whose first pixel starts a bin (bins past the crop: +inf)."""
    h, w = stain.shape
    out = np.full(shape, np.inf, np.float32)
    hh, ww = min(h // bin_size, shape[0]), min(w // bin_size, shape[1])
    full = stain[: hh * bin_size, : ww * bin_size].reshape(hh, bin_size, ww, bin_size)
    out[:hh, :ww] = full.mean(axis=(1, 3))
    return out


def negative_distance(distances: np.ndarray, *, preferred: float, floor: float, wanted: int) -> float:
    """How far from every nucleus centroid negatives must lie: ``preferred``, or, when fewer than
    ``wanted`` candidates (at ``distances``) lie farther, the largest distance that leaves
    ``wanted`` of them, but not below ``floor``.

    Examples
    --------
    >>> d = np.array([2.0, 4.0, 6.0, 8.0, 20.0])
    >>> negative_distance(d, preferred=15.0, floor=3.0, wanted=1)  # one candidate beyond 15
    15.0
    >>> negative_distance(d, preferred=15.0, floor=3.0, wanted=3)  # three beyond 5.9
    5.9

    """
    if (distances > preferred).sum() >= wanted or floor >= preferred:
        return preferred
    farthest = np.sort(distances)[::-1]
    if len(farthest) < wanted:
        return floor
    return float(np.clip(np.floor(farthest[wanted - 1] * 10 - 1e-9) / 10, floor, preferred))


_Fields = TypeVar("_Fields", Samples, Neighbourhoods)


def _concat(parts: list[_Fields]) -> _Fields:
    """``parts`` (dataclasses of array fields, all of one kind) as one, in order."""
    kind = type(parts[0])
    return kind(*(np.concatenate([getattr(p, f) for p in parts]) for f in kind.__dataclass_fields__))


def training_set(
    index: TranscriptIndex, stain, nuclei, lut, centres: NucleusCentres, *, bin_size: int, tile: int,
    max_tiles: int, erosion_px: int, negative_distance_range: tuple[float, float], dark: float, max_per_class: int,
    validation_fraction: float, settings: dict, rng: np.random.Generator,
    cytoplasm: tuple[ExpressionModel, np.ndarray, float] | None = None,
) -> TrainingSet:  # fmt: skip
    """Balanced samples from up to ``max_tiles`` tiles of ``tile`` bins holding nuclei, their tokens,
    and a validation mask holding out the rightmost ``validation_fraction`` of them.

    With ``cytoplasm = (model, reach, margin)``, the positives include the cytoplasm bins that
    :func:`jointseg.seg.sslcst.samples.tied_cytoplasm` ties to one nucleus.

    Negatives lie farther than the preferred distance of ``negative_distance_range = (floor,
    preferred)`` (bins) from every centroid, or closer, down to the floor, where too few do (packed
    tissue: see :func:`negative_distance`).
    """
    h, w = index.shape
    keep = tiles_with_nuclei(nuclei, tile, max_tiles=max_tiles, rng=rng, bin_size=bin_size, method="SSL-CST")
    margin = int(np.ceil(settings["radius_bins"]))
    floor, preferred = negative_distance_range
    tiles, n_tied = [], 0
    for y0, y1, x0, x1 in keep:
        pix = (y0 * bin_size, min(y1 * bin_size, h), x0 * bin_size, min(x1 * bin_size, w))
        nuc = np.asarray(nuclei[pix[0] : pix[1], pix[2] : pix[3]])
        shape = (y1 - y0, x1 - x0)
        eroded = sample_bins(erode_labels(nuc, erosion_px), (0, shape[0], 0, shape[1]), bin_size)
        nucleus = sample_bins(nuc, (0, shape[0], 0, shape[1]), bin_size)
        table = BinTable.read(index, (y0 - margin, y1 + margin, x0 - margin, x1 + margin), bin_size=bin_size,
                              gene_lut=lut)  # fmt: skip
        expressed = np.zeros(shape, bool)
        inside = (table.y >= y0) & (table.y < y1) & (table.x >= x0) & (table.x < x1)
        expressed[table.y[inside] - y0, table.x[inside] - x0] = True
        bin_stain = _bin_means(np.asarray(stain[pix[0] : pix[1], pix[2] : pix[3]], np.float32), bin_size, shape)
        pos, neg = select_samples(eroded, nucleus, expressed, bin_stain, (y0, x0), centres,
                                  negative_distance=floor, dark=dark)  # fmt: skip
        if cytoplasm is not None:
            expression, reach, tie_margin = cytoplasm
            tied = tied_cytoplasm(table, nucleus, (y0, x0), centres, reach, expression, margin=tie_margin)
            n_tied += len(tied)
            pos = _concat([pos, tied])
        far = centres.tree.query(np.c_[neg.y, neg.x])[0] if len(centres) and len(neg) else np.full(len(neg), np.inf)
        tiles.append((pos, neg, far, table))
    n_pos = sum(len(t[0]) for t in tiles)
    chosen = negative_distance(np.concatenate([t[2] for t in tiles]), preferred=preferred, floor=floor,
                               wanted=min(n_pos, max_per_class))  # fmt: skip
    positives, negatives, tokens_pos, tokens_neg, tables, shift = [], [], [], [], [], 0
    for pos, neg, far, table in tiles:
        neg = neg.subset(np.flatnonzero(far > chosen))
        geometry = token_geometry(table, centres, settings)
        for kind, out, tok in ((pos, positives, tokens_pos), (neg, negatives, tokens_neg)):
            found = tokens_of(table, geometry, centres, kind.y, kind.x, settings)
            tok.append(Neighbourhoods(np.where(found.token_bin >= 0, found.token_bin + shift, -1), found.position,
                                      found.distance, found.valid))  # fmt: skip
            out.append(kind)
        tables.append(table)
        shift += len(table)

    all_pos, all_neg = _concat(positives), _concat(negatives)
    pick_pos, pick_neg = balance(len(all_pos), len(all_neg), max_per_class=max_per_class, rng=rng)
    rows = np.r_[pick_pos, pick_neg + len(all_pos)]
    samples = _concat([all_pos, all_neg]).subset(rows)
    tokens = _concat(tokens_pos + tokens_neg)
    tokens = Neighbourhoods(tokens.token_bin[rows], tokens.position[rows], tokens.distance[rows], tokens.valid[rows])
    cut = np.quantile(samples.x, 1 - validation_fraction)
    validation = samples.x > cut
    if not validation.any() or validation.all():
        validation = np.zeros(len(samples), bool)
        n_held = max(int(round(len(samples) * validation_fraction)), 1)
        validation[np.argsort(samples.x, kind="stable")[-n_held:]] = True
    logger.info(
        "SSL-CST: %d positive (%d in the cytoplasm) and %d negative samples available on %d tiles; %d used (%d held "
        "out)", len(all_pos), n_tied, len(all_neg), len(keep), len(samples), validation.sum(),
    )  # fmt: skip
    return TrainingSet(samples, tokens, BinTable.concat(tables), validation, chosen, n_tied)


#: Negatives lie this far from every nucleus centroid unless the tissue is too packed.
PREFERRED_NEGATIVE_DISTANCE_UM = 15.0


def _negative_distance_range(run: MethodRun, negative_distance_um: float | None, bin_um: float) -> tuple[float, float]:
    """(floor, preferred) negative distance in bins: a given distance is both; None prefers 15 um
    and goes down to a typical cell's reach on this slide where too few empty bins lie that far.
    """
    if negative_distance_um is not None:
        return negative_distance_um / bin_um, negative_distance_um / bin_um
    reach = min(run.cell_extent().typical_reach_um(), PREFERRED_NEGATIVE_DISTANCE_UM)
    return reach / bin_um, PREFERRED_NEGATIVE_DISTANCE_UM / bin_um


def nucleus_expression(run: MethodRun, lut: np.ndarray, n_genes: int, centres: NucleusCentres, *, bin_um: float,
                       seed: int) -> tuple[ExpressionModel, np.ndarray]:  # fmt: skip
    """The per-nucleus expression model (each nucleus's own counts shrunk toward its type's; the
    background: every transcript outside the nuclei) and each nucleus's reach in bins (its radius
    plus its extent estimated from the transcripts), rows as ``centres``.
    """
    counts = nucleus_counts(run.nuclei(), run.index, lut, n_genes)  # rows up to the largest id holding a transcript
    missing = int(centres.ids.max(initial=0)) + 1 - counts.shape[0]
    if missing > 0:
        counts = sparse.vstack([counts, sparse.csr_matrix((missing, n_genes))])
    counts = sparse.csr_matrix(counts)[centres.ids]
    codes = run.index.gene
    column = np.where(codes >= 0, lut[np.maximum(codes, 0)], -1)
    everywhere = np.bincount(column[column >= 0], minlength=n_genes)
    outside = np.maximum(everywhere - np.asarray(counts.sum(axis=0)).ravel(), 0)
    area_um2 = np.pi * (centres.radius * bin_um) ** 2
    h, w = run.index.shape
    model = fit_expression_model(
        centres.ids, counts, counts, area_um2, outside,
        max(h * w * run.pixel_size_um**2 - area_um2.sum(), 1.0), seed=seed,
        order=np.lexsort((centres.x, centres.y)),
    )  # fmt: skip
    extent = run.cell_extent()
    own = extent.per_nucleus_um[np.minimum(centres.ids, len(extent.per_nucleus_um) - 1)]
    own = np.where(np.isfinite(own) & (centres.ids < len(extent.per_nucleus_um)), own, extent.global_um)
    return model, centres.radius + own / bin_um


def train_on_slide(
    run: MethodRun,
    *,
    channel: int | str | None,
    config: SSLCSTConfig,
    genes: list[str],
    lut: np.ndarray,
    bin_size: int,
    centres: NucleusCentres,
    steps: int,
    patience: int,
    negative_distance_um: float | None,
    distance_dropout: float,
    seed: int,
    progress: bool,
) -> SSLCSTModel:
    """Train a new SSL-CST on the slide of ``run`` (see :func:`jointseg.seg.train_sslcst`): balanced
    samples from tiles holding nuclei, then :func:`train_transformer`.
    """
    px, stain = run.pixel_size_um, run.stain(channel)
    bin_um = bin_size * px
    torch.manual_seed(seed)
    model = SSLCSTModel.new(
        TransformerConfig(n_genes=len(genes), dim=config.dim, layers=config.layers, heads=config.heads),
        genes=genes, bin_size=bin_size, pixel_size_um=px, n_neighbours=config.n_neighbours,
        radius_bins=config.radius_um / bin_um, distance_scale_um=config.distance_scale_um, device=run.device,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    dark = float(sampled_percentiles(stain, [100 * config.dark_quantile])[0])
    cytoplasm = None
    if config.cytoplasm_margin is not None:
        expression, reach = nucleus_expression(run, lut, len(genes), centres, bin_um=bin_um, seed=seed)
        cytoplasm = (expression, reach, config.cytoplasm_margin)
    data = training_set(
        run.index, stain, run.nuclei(), lut, centres, bin_size=bin_size,
        tile=max(int(round(config.tile_um / bin_um)), 8), max_tiles=config.max_tiles,
        erosion_px=int(round(config.erosion_um / px)),
        negative_distance_range=_negative_distance_range(run, negative_distance_um, bin_um), dark=dark,
        max_per_class=config.max_samples,
        validation_fraction=config.validation_fraction, settings=token_settings(model), rng=rng, cytoplasm=cytoplasm,
    )  # fmt: skip
    if negative_distance_um is None and data.negative_distance * bin_um < PREFERRED_NEGATIVE_DISTANCE_UM:
        logger.warning(
            "SSL-CST: few empty bins lie %.0f um from every nucleus (packed tissue); negatives are taken from "
            "%.1f um instead (set negative_distance_um to choose).",
            PREFERRED_NEGATIVE_DISTANCE_UM, data.negative_distance * bin_um,
        )  # fmt: skip
    params = SSLCSTParams(max_steps=steps, batch_size=config.batch_size, lr=config.lr, patience=patience,
                          distance_dropout=distance_dropout)  # fmt: skip
    model.training_log = train_transformer(model, data, params, seed=seed, progress=progress)
    model.training_log.update({
        "device": run.device, "n_positive": int(data.samples.foreground.sum()),
        "n_cytoplasm_available": data.n_cytoplasm_available,
        "negative_distance_um": data.negative_distance * bin_um,
    })  # fmt: skip
    return model
