"""SegJointGene's joint refinement on training tiles: train the semantic network on the current
cell-type labels, score genes with CID, grow cells from their nuclei where the type, the confidence
and the CID support agree, and repeat until the labels and the gene ranking stop changing.

All of it runs on the coarse grid of bins the network sees.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from jointseg._core.expansion import expand_block
from jointseg._core.genes import sample_bins
from jointseg._core.method_run import MethodRun
from jointseg._core.training import fit, tiles_with_nuclei
from jointseg.models import BinnedCounts, SegJointGeneModel, SemanticConfig, bin_transcripts
from jointseg.seg.segjointgene.cid import CIDParams, cid_tile
from jointseg.seg.segjointgene.config import SegJointGeneConfig
from jointseg.seg.segjointgene.postprocess import grow_by_type

logger = logging.getLogger("jointseg")

#: Targets of bins that do not count in the loss (untyped nuclei's cells, padding).
IGNORE = -1


@dataclass
class TrainingTile:
    """One training tile on the coarse grid: its transcripts, nucleus cores and current cell labels."""

    counts: BinnedCounts
    cores: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class JointParams:
    """Settings of the joint refinement (see :func:`jointseg.seg.segjointgene`)."""

    steps: int = 200
    max_iterations: int = 4
    batch_size: int = 8
    crop: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-5
    stop_changed: float = 0.01
    stop_jaccard: float = 0.9
    top_genes: int = 50
    cid_top: float = 0.1
    confidence: float = 0.5
    max_distance: float = 10.0
    max_hole_area: int = 10
    fill: bool = True
    gene_penalty: float = 2e-2
    cid_window: int = 32
    cid_windows: int = 6


def class_targets(labels: np.ndarray, type_of: np.ndarray) -> np.ndarray:
    """Per bin: 0 background, the cell's type ``1..n``, or :data:`IGNORE` for cells of untyped nuclei."""
    types = type_of[np.minimum(labels, len(type_of) - 1)]
    return np.where(labels == 0, 0, np.where(types > 0, types, IGNORE)).astype(np.int64)


def class_weights(targets: list[np.ndarray], n_classes: int) -> torch.Tensor:
    """Cross-entropy weights ``total / count`` per class, normalised to mean 1 over the classes
    present and clipped to [0.1, 10] (absent classes: 1).
    """
    counts = np.zeros(n_classes)
    for t in targets:
        counts += np.bincount(t[t >= 0].ravel(), minlength=n_classes)[:n_classes]
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = counts.sum() / counts[present]
    w[present] /= w[present].mean()
    return torch.as_tensor(np.clip(w, 0.1, 10.0), dtype=torch.float32)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy plus the soft Dice loss of the foreground (non-background)."""
    ce = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)
    valid = (target != IGNORE).float()
    fg_prob = (1 - torch.softmax(logits, dim=1)[:, 0]) * valid
    fg_true = (target > 0).float() * valid
    dice = 1 - (2 * (fg_prob * fg_true).sum() + 1) / (fg_prob.sum() + fg_true.sum() + 1)
    return ce + dice


def _batch(tiles: list[TrainingTile], targets: list[np.ndarray], rng: np.random.Generator, params: JointParams):
    counts, ys = [], []
    for _ in range(params.batch_size):
        t = int(rng.integers(len(tiles)))
        h, w = tiles[t].labels.shape
        side = min(params.crop, h, w)
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        target = np.rot90(targets[t][y : y + side, x : x + side], k)
        counts.append(tiles[t].counts.crop(y, y + side, x, x + side).transformed(k, flip))
        ys.append(np.ascontiguousarray(target[:, ::-1] if flip else target))
    return counts, torch.from_numpy(np.stack(ys))


def train_semantic(
    model: SegJointGeneModel,
    tiles: list[TrainingTile],
    targets: list[np.ndarray],
    params: JointParams,
    rng: np.random.Generator,
    *,
    desc: str,
    progress: bool,
) -> list[float]:
    """``params.steps`` AdamW steps (one-cycle schedule) on random crops with rotations and flips;
    the loss is :func:`semantic_loss` plus a group-lasso penalty on each gene's input weights.
    """
    net = model.network
    weight = class_weights(targets, len(model.types) + 1).to(model.device)

    def step_loss() -> torch.Tensor:
        counts, target = _batch(tiles, targets, rng, params)
        # Group lasso on the gene layer: a gene whose channel does not help keeps (nearly) zero
        # weight, so CID, which measures sensitivity, cannot mistake random weights for information.
        loss = semantic_loss(net(counts), target.to(model.device), weight)
        return loss + params.gene_penalty * net.encoder.weight.norm(dim=1).sum()

    log = fit(net, step_loss, steps=params.steps, lr=params.lr, weight_decay=params.weight_decay,
              device=model.device, desc=desc, progress=progress)  # fmt: skip
    return log.losses


def cid_weights(cid: np.ndarray) -> np.ndarray:
    """``(genes, types)`` weights of the CID support: per type, each gene's CID score above the
    type's median (0 below it or where unmeasured), normalised to sum 1.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # types with no scored gene: all-NaN rows
        above = np.nan_to_num(cid - np.nanmedian(cid, axis=1, keepdims=True), nan=0.0).clip(min=0)
        total = above.sum(axis=1, keepdims=True)
        return np.where(total > 0, above / np.where(total > 0, total, 1), 0.0).T.astype(np.float32)


@torch.inference_mode()
def cid_support(model: SegJointGeneModel, counts: BinnedCounts, weights: np.ndarray) -> np.ndarray:
    """``(types, h, w)``: per bin and type, the CID-weighted sum of the blurred gene channels."""
    encoder = model.network.encoder
    w = torch.from_numpy(weights).to(model.device)
    return encoder.blur(encoder.scatter([counts], w))[0].cpu().numpy()


def candidates(probs: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: the argmax class, whether its smoothed probability exceeds ``confidence``, and
    whether the smoothed foreground probability (1 - background) does.
    """
    best = probs.argmax(axis=0)
    smooth = ndi.gaussian_filter(probs, sigma=(0, 1, 1), mode="nearest")
    conf = np.take_along_axis(smooth, best[None], axis=0)[0]
    return best, (best > 0) & (conf > confidence), smooth[0] < 1 - confidence


def allowed_types(
    best: np.ndarray, ok: np.ndarray, foreground: np.ndarray, support: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Per bin, the type a cell may grow into: ``best`` where confident with a CID support at or
    above its type's threshold, else -1 in the foreground, else 0.
    """
    idx = np.maximum(best - 1, 0)
    own = np.take_along_axis(support, idx[None], axis=0)[0]
    return np.where(ok & (own >= thresholds[idx]), best, np.where(foreground, -1, 0))


def support_thresholds(bests, oks, supports, n_types: int, top: float) -> np.ndarray:
    """Per type, the ``1 - top`` quantile of the CID support over that type's confident bins."""
    out = np.zeros(n_types)
    for t in range(1, n_types + 1):
        values = np.concatenate([s[t - 1][(b == t) & o] for b, o, s in zip(bests, oks, supports, strict=True)])
        out[t - 1] = np.quantile(values, 1 - top) if len(values) else np.inf
    return out


def cid_scores(
    model: SegJointGeneModel, windows: list[tuple[int, int, int]], tiles: list[TrainingTile], params: JointParams,
    probs: list[np.ndarray], cid_params: CIDParams, seed: int,
) -> tuple[np.ndarray, int, float]:  # fmt: skip
    """CID ``(types, genes)`` over the CID windows (support-weighted mean), pairs scored, seconds."""
    start = time.perf_counter()
    total = np.zeros((len(model.types), len(model.genes)))
    weight = np.zeros_like(total)
    n_pairs = 0
    s = params.cid_window
    for i, (t, y, x) in enumerate(windows):
        counts = tiles[t].counts.crop(y, y + s, x, x + s)
        best, ok, _ = candidates(probs[t][:, y : y + s, x : x + s], params.confidence)
        types = np.flatnonzero(np.bincount(best[ok].ravel(), minlength=len(model.types) + 1) >= 8)
        types = types[types > 0]
        genes = np.flatnonzero(np.bincount(counts.gene, weights=counts.count, minlength=len(model.genes)) >= 2)
        if len(types) == 0 or len(genes) == 0:
            continue
        scores, support = cid_tile(model.network, counts, genes, types, params=cid_params, seed=seed + i)
        measured = np.isfinite(scores)
        rows, cols = np.ix_(types - 1, genes)
        total[rows, cols] += np.where(measured, scores * support, 0)
        weight[rows, cols] += np.where(measured, support, 0)
        n_pairs += len(genes) * len(types)
    with np.errstate(invalid="ignore"):
        return np.where(weight > 0, total / weight, np.nan), n_pairs, time.perf_counter() - start


def gene_ranking(cid: np.ndarray) -> np.ndarray:
    """Gene order by overall CID score (mean over types), best first; unmeasured genes last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: genes never measured
        overall = np.nanmean(cid, axis=0)
    return np.argsort(np.where(np.isnan(overall), -np.inf, overall), kind="stable")[::-1]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index of two sets of ids."""
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / max(len(a | b), 1)


def predict_tiles(model: SegJointGeneModel, tiles: list[TrainingTile]) -> list[np.ndarray]:
    """Class probabilities of each whole training tile."""
    return [model.predict([t.counts])[0] for t in tiles]


def joint_refinement(
    model: SegJointGeneModel,
    tiles: list[TrainingTile],
    type_of: np.ndarray,
    params: JointParams,
    cid_params: CIDParams,
    *,
    seed: int,
    progress: bool,
) -> dict:
    """Run the refinement loop on ``tiles`` (their ``labels`` updated in place); returns the log and
    sets ``model.cid`` and ``model.support_threshold``.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    s = params.cid_window
    windows = []
    for _ in range(params.cid_windows):
        t = int(rng.integers(len(tiles)))
        h, w = tiles[t].labels.shape
        windows.append((t, int(rng.integers(max(h - s, 0) + 1)), int(rng.integers(max(w - s, 0) + 1))))
    log = {"iterations": [], "converged": False}
    previous_top = None
    for it in range(1, params.max_iterations + 1):
        start = time.perf_counter()
        targets = [class_targets(t.labels, type_of) for t in tiles]
        losses = train_semantic(
            model, tiles, targets, params, rng, desc=f"SegJointGene iteration {it}/{params.max_iterations}",
            progress=progress,
        )  # fmt: skip
        probs = predict_tiles(model, tiles)
        cid, n_pairs, cid_s = cid_scores(model, windows, tiles, params, probs, cid_params, seed)
        model.cid = cid
        weights = cid_weights(cid)
        picks = [candidates(p, params.confidence) for p in probs]
        supports = [cid_support(model, t.counts, weights) for t in tiles]
        thresholds = support_thresholds(
            [p[0] for p in picks], [p[1] for p in picks], supports, len(model.types), params.cid_top
        )
        model.support_threshold = thresholds
        changed = 0
        for tile, (best, ok, fg), support in zip(tiles, picks, supports, strict=True):
            allowed = allowed_types(best, ok, fg, support, thresholds)
            new = grow_by_type(
                tile.cores, allowed, type_of, max_distance=params.max_distance, max_hole_area=params.max_hole_area,
                fill=params.fill,
            )  # fmt: skip
            changed += int((new != tile.labels).sum())
            tile.labels = new
        top = gene_ranking(cid)[: params.top_genes]
        stable = jaccard(top, previous_top) if previous_top is not None else float("nan")
        previous_top = top
        n_bins = sum(t.labels.size for t in tiles)
        entry = {
            "iteration": it,
            "loss_first": float(np.mean(losses[: max(len(losses) // 10, 1)])),
            "loss_last": float(np.mean(losses[-max(len(losses) // 10, 1) :])),
            "changed_fraction": changed / n_bins,
            "top_genes_jaccard": stable,
            "foreground_fraction": float(np.mean([(t.labels > 0).mean() for t in tiles])),
            "cid_pairs": n_pairs,
            "cid_seconds": cid_s,
            "seconds": time.perf_counter() - start,
        }
        log["iterations"].append(entry)
        logger.info(
            "SegJointGene iteration %d: loss %.3f -> %.3f, %.2f%% bins changed, top-%d Jaccard %.2f, %d CID pairs "
            "(%.0f s)", it, entry["loss_first"], entry["loss_last"], 100 * entry["changed_fraction"],
            params.top_genes, stable, n_pairs, entry["seconds"],
        )  # fmt: skip
        if entry["changed_fraction"] < params.stop_changed and stable >= params.stop_jaccard:
            log["converged"] = True
            break
    return log


def training_tiles(
    index, nuclei, lut, *, bin_size, tile, max_tiles, prior_px, density_sigma_px, min_count, rng
) -> list[TrainingTile]:
    """Tiles of ``tile`` bins holding nuclei (at most ``max_tiles``, drawn at random), with round-0
    labels: the nuclei grown by ``prior_px`` (one number, or one per nucleus id) into the transcript
    foreground, as in ``expand_nuclei``.
    """
    h, w = index.shape
    halo = int(np.ceil(np.max(prior_px, initial=0.0))) + 2
    tiles = []
    for y0, _, x0, _ in tiles_with_nuclei(nuclei, tile, max_tiles=max_tiles, rng=rng, bin_size=bin_size,
                                          method="SegJointGene"):  # fmt: skip
        y1, x1 = y0 + tile, x0 + tile  # every tile is tile x tile bins, empty beyond the slide
        full = (y0 * bin_size, min(y1 * bin_size, h), x0 * bin_size, min(x1 * bin_size, w))
        ext = (max(full[0] - halo, 0), min(full[1] + halo, h), max(full[2] - halo, 0), min(full[3] + halo, w))
        nuc = np.asarray(nuclei[ext[0] : ext[1], ext[2] : ext[3]])
        prior = expand_block(nuc, index, ext, full, prior_px, density_sigma_px, min_count)
        labels = sample_bins(prior, (0, tile, 0, tile), bin_size)
        counts = bin_transcripts(index, (y0, y1, x0, x1), bin_size=bin_size, gene_lut=lut)
        tiles.append(TrainingTile(counts, sample_bins(nuclei, (y0, y1, x0, x1), bin_size), labels))
    return tiles


def train_on_slide(
    run: MethodRun,
    *,
    config: SegJointGeneConfig,
    genes: list[str],
    lut: np.ndarray,
    type_of: np.ndarray,
    type_names: list[str],
    type_profiles: np.ndarray,
    steps: int,
    max_rounds: int,
    cid_top: float,
    fill: bool,
    prior_expansion_um: float | None,
    max_expansion_um: float | None,
    seed: int,
    progress: bool,
) -> SegJointGeneModel:
    """Train a new SegJointGene on the slide of ``run`` (see :func:`jointseg.seg.train_segjointgene`):
    warm-up tiles of nuclei grown into the transcript foreground, then :func:`joint_refinement`.
    """
    px, device = run.pixel_size_um, run.device
    bin_size = max(int(round(config.bin_um / px)), 1)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    network = SemanticConfig(
        n_genes=len(genes), n_types=len(type_names), sigma_bins=config.gene_sigma_um / (bin_size * px),
        widths=config.widths, embedding=config.widths[0],
    )  # fmt: skip
    model = SegJointGeneModel.new(network, genes=genes, types=type_names, bin_size=bin_size, pixel_size_um=px,
                                  device=device)  # fmt: skip
    model.type_profiles = type_profiles
    multiple = model.network.multiple
    tile = max(int(round(config.tile_um / (bin_size * px))) // multiple, 1) * multiple
    tiles = training_tiles(
        run.index, run.nuclei(), lut, bin_size=bin_size, tile=tile, max_tiles=config.max_tiles,
        prior_px=run.expansion_px(prior_expansion_um), density_sigma_px=2.0 / px,
        min_count=config.min_density_per_um2 * px**2, rng=rng,
    )  # fmt: skip
    params = JointParams(
        steps=steps, max_iterations=max_rounds, cid_top=cid_top, confidence=config.confidence,
        max_distance=run.growth_limit_um(max_expansion_um) / (bin_size * px), cid_windows=config.cid_windows, fill=fill,
        crop=min(64, tile),
    )  # fmt: skip
    cid_params = CIDParams(steps=config.cid_steps, samples=config.cid_samples, estimator=config.cid_estimator,
                           probes=config.cid_probes)  # fmt: skip
    log = joint_refinement(model, tiles, type_of, params, cid_params, seed=seed, progress=progress)
    log.update({"n_tiles": len(tiles), "tile_bins": tile, "device": device})
    model.training_log = log
    return model
