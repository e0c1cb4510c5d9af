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
at the initial sigma. A per-pair ``MSE_0`` (each pair's own initial
MSE), which the method's description also admits, cannot rank genes: MSE grows as sigma^2 in the
linear regime, so every pair would stop after the same relative growth of sigma. Against a
shared reference, the most sensitive gene stops almost at once (high score), a gene ``k`` times
less sensitive lets sigma grow about ``sqrt(k)`` times first, and an uninformative gene's sigma
grows until the steps run out (low score).

Two estimators of the distortion, ``CIDParams.estimator``:

- ``"sampled"`` (the paper): each step passes ``samples`` noise draws through the network for every
  pair. The noise enters after the linear gene layer as ``embedding + W[g] * noise``; pairs are
  batched ``pair_batch`` at a time and those that stopped leave the batch. Cost: ``genes x types x
  steps x samples`` passes of the network's trunk, the step that dominated training.
- ``"expected"`` (default): the expected MSE of the linearised network,
  ``sum_cells sigma_cell**2 * S[type, gene, cell]``, where the sensitivity ``S`` comes from
  ``probes`` backward passes per type (Hutchinson estimates of ``sum_o J J^T`` per noise cell,
  shared by all genes; see :func:`_sensitivity`). The same Adam steps, lambda schedule and stop rule
  then run on that closed form for every pair at once. Cost: ``types x probes`` trunk passes per
  tile, whatever the panel size; the noise stays small (``log sigma`` rises at most
  ``steps x lr``), where the linearisation holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

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
    estimator: Literal["expected", "sampled"] = "expected"
    probes: int = 16


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
    gene_weights: torch.Tensor,
    classes: torch.Tensor,
    reference: torch.Tensor,
    params: CIDParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Final ``log sigma`` grids ``(P, 1, gh, gw)`` of a batch of (gene, class) pairs."""
    _, _, h, w = embedding.shape
    p = len(classes)
    gh, gw = -(-h // params.grid), -(-w // params.grid)
    log_sigma = torch.full((p, 1, gh, gw), params.init_log_sigma, device=embedding.device)
    m = torch.zeros_like(log_sigma)
    v = torch.zeros_like(log_sigma)
    lam = torch.full((p,), params.lambda_init, device=embedding.device)
    previous = torch.zeros(p, device=embedding.device)
    target = clean[0, classes]
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
) -> tuple[np.ndarray, np.ndarray]:
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
        Optimisation settings; ``params.estimator`` chooses how the distortion is measured (see the
        module docstring).
    seed
        Seed of the noise samples or probes.

    Returns
    -------
    ``scores`` ``(len(types), len(genes))``: mean CID score over the bins where the gene is present
    (NaN where it is absent), and ``support`` of the same shape: the number of those bins.

    Examples
    --------
    >>> import numpy as np
    >>> from jointseg.models import BinnedCounts, SemanticConfig, SemanticUNet
    >>> net = SemanticUNet(SemanticConfig(n_genes=2, n_types=1, widths=(8, 16)))
    >>> counts = BinnedCounts(np.array([0, 1]), np.array([3, 9]), np.array([4, 8]), np.ones(2, np.float32), (16, 16))
    >>> scores, support = cid_tile(net, counts, np.array([0, 1]), np.array([1]))
    >>> scores.shape
    (1, 2)

    """
    network.eval()
    device = next(network.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embedding = network.encoder([counts])
        dense = torch.from_numpy(BinnedCounts(*_select(counts, genes), counts.shape).dense(len(genes)))[None]
        present = (network.encoder.blur(dense.to(device))[0] > params.presence).float()
        present_cells = _cell_sums(present, params.grid).cpu().numpy()
    gene_weights = network.encoder.weight.detach()[torch.as_tensor(genes, device=device)]
    classes = torch.as_tensor(types, device=device)
    if params.estimator == "expected":
        log_sigma = _expected_log_sigma(network, embedding, gene_weights, classes, params, generator)
    else:
        log_sigma = _sampled_log_sigma(network, embedding, gene_weights, classes, params, generator)
    support = np.broadcast_to(present_cells.sum(axis=(1, 2)), (len(types), len(genes))).copy()
    with np.errstate(invalid="ignore"):
        scores = -SCORE_SCALE * (log_sigma * present_cells[None]).sum(axis=(2, 3)) / support
    scores[support == 0] = np.nan
    return scores, support


def _cell_sums(values: torch.Tensor, grid: int) -> torch.Tensor:
    """Sums of ``(..., h, w)`` over the ``grid`` x ``grid`` cells of the noise grid: ``(..., gh, gw)``."""
    h, w = values.shape[-2:]
    gh, gw = -(-h // grid), -(-w // grid)
    padded = F.pad(values, (0, gw * grid - w, 0, gh * grid - h))
    return padded.unflatten(-1, (gw, grid)).unflatten(-3, (gh, grid)).sum(dim=(-3, -1))


def _sampled_log_sigma(network, embedding, gene_weights, classes, params, generator) -> np.ndarray:
    """``log sigma`` ``(types, genes, gh, gw)`` by Monte-Carlo noise through the network (the paper)."""
    n_types, n_genes = len(classes), len(gene_weights)
    pair_gene = torch.arange(n_genes, device=embedding.device).repeat_interleave(n_types)
    pair_class = classes.repeat(n_genes)
    _, _, h, w = embedding.shape
    with torch.no_grad():
        clean = network.trunk(embedding)
        sigma0 = torch.full((1, 1, h, w), float(np.exp(params.init_log_sigma)), device=embedding.device)
        initial = torch.cat([
            _distortion(network, embedding, clean[0, pair_class[sl]], gene_weights[pair_gene[sl]], pair_class[sl],
                        sigma0, generator, params.samples)
            for sl in _batches(len(pair_gene), params.pair_batch)
        ])  # fmt: skip
    reference = initial.view(n_genes, n_types).amax(dim=0).clamp(min=1e-12).repeat(n_genes)
    log_sigma = torch.cat([
        _optimise_pairs(network, embedding, clean, gene_weights[pair_gene[sl]], pair_class[sl], reference[sl], params,
                        generator)
        for sl in _batches(len(pair_gene), params.pair_batch)
    ])  # fmt: skip
    return log_sigma[:, 0].view(n_genes, n_types, *log_sigma.shape[-2:]).transpose(0, 1).cpu().numpy()


def _batches(n: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, n, size)]


def _expected_log_sigma(network, embedding, gene_weights, classes, params, generator) -> np.ndarray:
    """``log sigma`` ``(types, genes, gh, gw)`` from the expected distortion (see the module docstring)."""
    sensitivity = _sensitivity(network, embedding, gene_weights, classes, params, generator).double().cpu().numpy()
    n_types, n_genes, gh, gw = sensitivity.shape
    sensitivity = sensitivity.reshape(n_types * n_genes, gh * gw)
    initial = np.exp(2 * params.init_log_sigma) * sensitivity.sum(axis=1)
    reference = np.repeat(initial.reshape(n_types, n_genes).max(axis=1).clip(min=1e-12), n_genes)
    return _optimise_expected(sensitivity, reference, params).reshape(n_types, n_genes, gh, gw)


def _sensitivity(network, embedding, gene_weights, classes, params, generator) -> torch.Tensor:
    """``(types, genes, gh, gw)``: per noise cell, the expected logit MSE per unit noise variance.

    For a type's logit map ``z`` and noise ``W[g] * s * eps`` added at the bins ``b`` of a cell, the
    expected MSE is ``s**2 / n * sum_b W[g] @ M_b @ W[g]`` with ``M_b = sum_o J_ob J_ob^T`` (``J_ob``:
    gradient of ``z_o`` with respect to the embedding at ``b``). ``M_b`` is estimated with
    ``params.probes`` Rademacher vectors ``r`` (Hutchinson): ``E[g g^T]`` with ``g = grad_b(r @ z)``.
    Summed over a cell's bins first, every gene then costs one ``C x C`` quadratic form per cell.
    """
    _, c, h, w = embedding.shape
    k, grid = params.probes, params.grid
    out = []
    for cls in classes.tolist():
        probe = embedding.expand(k, c, h, w).clone().requires_grad_(True)
        logits = network.trunk(probe)[:, cls]
        signs = torch.randint(0, 2, logits.shape, generator=generator).to(logits) * 2 - 1
        (grad,) = torch.autograd.grad((logits * signs).sum(), probe)
        # Outer products of the probe gradients summed over each cell's bins: (gh, gw, C, C).
        cells = F.pad(grad, (0, -w % grid, 0, -h % grid)).unflatten(-1, (-1, grid)).unflatten(-3, (-1, grid))
        per_cell = cells.permute(2, 4, 1, 0, 3, 5).flatten(-3)
        outer = per_cell @ per_cell.transpose(-1, -2) / (k * h * w)
        out.append(torch.einsum("gc,yxcd,gd->gyx", gene_weights, outer, gene_weights))
    return torch.stack(out)


def _optimise_expected(sensitivity: np.ndarray, reference: np.ndarray, params: CIDParams) -> np.ndarray:
    """The noise optimisation of :func:`_optimise_pairs` on the expected MSE ``sum sigma**2 * sensitivity``.

    Every pair at once, without the network: ``(pairs, cells)`` sensitivities -> ``log sigma``.
    """
    n_pairs, n_cells = sensitivity.shape
    log_sigma = np.full((n_pairs, n_cells), params.init_log_sigma)
    m, v = np.zeros_like(log_sigma), np.zeros_like(log_sigma)
    lam = np.full(n_pairs, params.lambda_init)
    previous = np.zeros(n_pairs)
    active = np.ones(n_pairs, bool)
    for step in range(1, params.steps + 1):
        if not active.any():
            break
        variance = np.exp(2 * log_sigma)
        ratio = (variance * sensitivity).sum(axis=1) / reference
        grad = 2 * variance * sensitivity / reference[:, None] - lam[:, None] / n_cells
        a = active[:, None]
        m = np.where(a, 0.9 * m + 0.1 * grad, m)
        v = np.where(a, 0.999 * v + 0.001 * grad**2, v)
        update = -params.lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        done = ratio > params.stop_ratio
        log_sigma = np.where(a & ~done[:, None], log_sigma + update, log_sigma)
        rise = ratio - previous
        lam = np.where(active, np.clip(np.where(rise < 0.02, lam * 1.5, np.where(rise > 0.1, lam * 0.5, lam)), 1e-3,
                                       1e3), lam)  # fmt: skip
        previous = np.where(active, ratio, previous)
        active &= ~done
    return log_sigma


def _select(counts: BinnedCounts, genes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bins of the chosen genes, renumbered ``0..len(genes) - 1``."""
    lut = np.full(max(int(counts.gene.max(initial=0)), int(genes.max(initial=0))) + 1, -1)
    lut[genes] = np.arange(len(genes))
    channel = lut[counts.gene]
    keep = channel >= 0
    return channel[keep], counts.y[keep], counts.x[keep], counts.count[keep]
