"""SegJointGene's CID score: how much noise a gene's channel tolerates before a cell type's logits move.

For a tile, a cell type ``c`` and a gene ``g``, a noise scale ``sigma`` is learnt on a coarse grid
(``grid`` x ``grid`` bins per value, ``log sigma`` starting at -3); ``sigma * eps`` is added to gene
``g``'s channel only (Monte-Carlo samples of ``eps``) and, with the network frozen, Adam (lr 0.1)
minimises ``MSE(noisy logits_c, clean logits_c) / MSE_0 - lambda * mean(log sigma)``: the second
term maximises the entropy of the injected noise (information discarding, Guan et al. 2019).
``lambda`` adapts at every step from ``r = MSE / MSE_0``: it grows while ``r`` rises slowly and
shrinks when ``r`` jumps (clamped to [1e-3, 1e3]); a pair stops once ``r > 1.2``. The score is
``-(pi * e / 2) * log sigma``: a gene that tolerates little noise carries information for that
cell type at that place. Per (type, gene), it is averaged over the bins where the gene is present.

``MSE_0`` is the reference distortion of the type: the largest, over the tile's genes, of the MSE
at the initial sigma (one extra noisy pass per pair). A per-pair ``MSE_0`` (each pair's own initial
MSE), which the method's description also admits, cannot rank genes: MSE grows as sigma^2 in the
linear regime, so every pair would stop after the same relative growth of sigma. Against a
shared reference, the most sensitive gene stops almost at once (high score), a gene ``k`` times
less sensitive lets sigma grow about ``sqrt(k)`` times first, and an uninformative gene's sigma
grows until the steps run out (low score).

All (gene, type) pairs of a tile are optimised together in batches of ``pair_batch``: the noise
enters the network after its linear gene layer as ``embedding + W[g] * noise``, so each pair costs
one pass of the network's trunk per sample and step, and pairs that stopped leave the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jointseg.models import BinnedCounts, SemanticUNet

#: Score per unit of -log sigma (the method's constant).
SCORE_SCALE = np.pi * np.e / 2


@dataclass(frozen=True)
class CIDParams:
    """Settings of the CID optimisation (see the module docstring)."""

    steps: int = 20
    lr: float = 0.1
    samples: int = 2
    grid: int = 8
    init_log_sigma: float = -3.0
    stop_ratio: float = 1.2
    lambda_init: float = 1.0
    pair_batch: int = 64
    presence: float = 0.05


def _upsample(values: torch.Tensor, grid: int, shape: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling of a ``(P, 1, gh, gw)`` grid to ``(P, 1, h, w)``."""
    return values.repeat_interleave(grid, -2).repeat_interleave(grid, -1)[..., : shape[0], : shape[1]]


def _distortion(network, embedding, target, gene_weights, classes, sigma, generator, samples) -> torch.Tensor:
    """Monte-Carlo MSE between the noisy and the clean logit of each pair's type."""
    mse = 0.0
    for _ in range(samples):
        eps = torch.randn(sigma.shape, generator=generator).to(embedding.device)
        logits = network.trunk(embedding + gene_weights[:, :, None, None] * (sigma * eps))
        out = logits[torch.arange(len(classes)), classes]
        mse = mse + ((out - target) ** 2).mean(dim=(-2, -1)) / samples
    return mse


def _optimise_pairs(
    network: SemanticUNet,
    embedding: torch.Tensor,
    clean: torch.Tensor,
    genes: torch.Tensor,
    classes: torch.Tensor,
    reference: torch.Tensor,
    params: CIDParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Final ``log sigma`` grids ``(P, 1, gh, gw)`` of a batch of (gene, class) pairs."""
    _, _, h, w = embedding.shape
    p = len(genes)
    gh, gw = -(-h // params.grid), -(-w // params.grid)
    log_sigma = torch.full((p, 1, gh, gw), params.init_log_sigma, device=embedding.device)
    m = torch.zeros_like(log_sigma)
    v = torch.zeros_like(log_sigma)
    lam = torch.full((p,), params.lambda_init, device=embedding.device)
    previous = torch.zeros(p, device=embedding.device)
    target = clean[0, classes]
    gene_weights = network.encoder.weight.detach()[genes]
    active = torch.arange(p, device=embedding.device)
    for step in range(1, params.steps + 1):
        if len(active) == 0:
            break
        ls = log_sigma[active].clone().requires_grad_(True)
        sigma = _upsample(ls.exp(), params.grid, (h, w))
        mse = _distortion(
            network, embedding, target[active], gene_weights[active], classes[active], sigma, generator, params.samples
        )
        ratio = mse / reference[active]
        loss = (ratio - lam[active] * ls.mean(dim=(1, 2, 3))).sum()
        (grad,) = torch.autograd.grad(loss, ls)
        with torch.no_grad():
            m[active] = 0.9 * m[active] + 0.1 * grad
            v[active] = 0.999 * v[active] + 0.001 * grad**2
            m_hat = m[active] / (1 - 0.9**step)
            v_hat = v[active] / (1 - 0.999**step)
            r = ratio.detach()
            done = r > params.stop_ratio
            update = -params.lr * m_hat / (v_hat.sqrt() + 1e-8)
            log_sigma[active] = torch.where(done[:, None, None, None], log_sigma[active], log_sigma[active] + update)
            rise = r - previous[active]
            lam[active] = torch.where(rise < 0.02, lam[active] * 1.5, torch.where(rise > 0.1, lam[active] * 0.5,
                                      lam[active])).clamp(1e-3, 1e3)  # fmt: skip
            previous[active] = r
            active = active[~done]
    return log_sigma


def cid_tile(
    network: SemanticUNet,
    counts: BinnedCounts,
    genes: np.ndarray,
    types: np.ndarray,
    *,
    params: CIDParams = CIDParams(),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CID scores of the (type, gene) pairs of one tile.

    Parameters
    ----------
    network
        Trained semantic network (frozen here).
    counts
        The tile's binned transcripts.
    genes
        Channels (gene numbers) to score.
    types
        Cell types to score, as output classes (``1..n_types``).
    params
        Optimisation settings.
    seed
        Seed of the noise samples.

    Returns
    -------
    ``scores`` ``(len(types), len(genes))``: mean CID score over the bins where the gene is present
    (NaN where it is absent); ``support`` of the same shape: the number of those bins; and
    ``maps`` ``(len(types), len(genes), h, w)`` float32: the per-bin score maps.

    """
    network.eval()
    device = next(network.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embedding = network.encoder([counts])
        clean = network.trunk(embedding)
        dense = torch.from_numpy(BinnedCounts(*_select(counts, genes), counts.shape).dense(len(genes)))[None]
        present = (network.encoder.blur(dense.to(device))[0] > params.presence).cpu().numpy()
    pair_gene = np.repeat(np.arange(len(genes)), len(types))
    pair_type = np.tile(np.arange(len(types)), len(genes))
    h, w = counts.shape
    maps = np.zeros((len(types), len(genes), h, w), np.float32)
    pair_genes = torch.as_tensor(genes[pair_gene], device=device)
    pair_classes = torch.as_tensor(types[pair_type], device=device)
    gene_weights = network.encoder.weight.detach()
    initial = torch.zeros(len(pair_gene), device=device)
    sigma0 = torch.full((1, 1, h, w), float(np.exp(params.init_log_sigma)), device=device)
    with torch.no_grad():
        for start in range(0, len(pair_gene), params.pair_batch):
            sl = slice(start, start + params.pair_batch)
            initial[sl] = _distortion(
                network, embedding, clean[0, pair_classes[sl]], gene_weights[pair_genes[sl]], pair_classes[sl],
                sigma0, generator, params.samples,
            )  # fmt: skip
    type_index = torch.as_tensor(pair_type, device=device)
    by_type = torch.zeros(len(types), device=device).scatter_reduce(0, type_index, initial, reduce="amax")
    reference = by_type.clamp(min=1e-12)[type_index]
    for start in range(0, len(pair_gene), params.pair_batch):
        sl = slice(start, start + params.pair_batch)
        log_sigma = _optimise_pairs(
            network, embedding, clean, pair_genes[sl], pair_classes[sl], reference[sl], params, generator
        )
        score = -SCORE_SCALE * _upsample(log_sigma, params.grid, (h, w))[:, 0].cpu().numpy()
        maps[pair_type[sl], pair_gene[sl]] = score
    support = present.sum(axis=(1, 2))[None, :].repeat(len(types), 0)
    with np.errstate(invalid="ignore"):
        scores = (maps * present[None]).sum(axis=(2, 3)) / support
    scores[support == 0] = np.nan
    return scores, support, maps


def _select(counts: BinnedCounts, genes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bins of the chosen genes, renumbered ``0..len(genes) - 1``."""
    lut = np.full(max(int(counts.gene.max(initial=0)), int(genes.max(initial=0))) + 1, -1)
    lut[genes] = np.arange(len(genes))
    channel = lut[counts.gene]
    keep = channel >= 0
    return channel[keep], counts.y[keep], counts.x[keep], counts.count[keep]
