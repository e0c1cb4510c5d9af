"""What every network of jointseg trains with: the optimisation loop and the training-tile sampler."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from jointseg._core.fields import window_origins
from jointseg._core.memory import release_memory


@dataclass
class FitLog:
    """What :func:`fit` did.

    Parameters
    ----------
    losses
        Training loss of every step.
    history
        One entry per validation: ``step``, ``train_loss`` and ``validation_loss``.
    best_validation_loss
        Lowest validation loss (``inf`` without validation); its weights are the ones kept.

    """

    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_validation_loss: float = float("inf")

    @property
    def steps(self) -> int:
        """Steps taken (fewer than asked when validation stopped the run early)."""
        return len(self.losses)


def fit(
    network: nn.Module,
    step_loss: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    one_cycle: bool = True,
    device: str = "cpu",
    validation_loss: Callable[[], float] | None = None,
    eval_every: int = 50,
    patience: int | None = None,
    desc: str = "training",
    progress: bool = True,
) -> FitLog:
    """Train ``network`` with AdamW for up to ``steps`` steps; ``step_loss()`` draws a batch and returns its loss.

    The loss is computed under bfloat16 autocast on CUDA (float32 elsewhere). With ``one_cycle`` the
    learning rate follows a one-cycle schedule peaking at ``lr`` after 10% of the steps. With
    ``validation_loss``, it is evaluated every ``eval_every`` steps and after the last one (network
    in eval mode); the run stops after ``patience`` evaluations without improvement and the best
    weights are restored. The caller seeds: ``step_loss`` owns the batch randomness.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Linear(1, 1)
    >>> x = torch.linspace(-1, 1, 16)[:, None]
    >>> log = fit(net, lambda: ((net(x) - 3 * x) ** 2).mean(), steps=200, lr=0.1, weight_decay=0.0, progress=False)
    >>> log.losses[-1] < 1e-3 < log.losses[0]
    True

    """
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = None
    if one_cycle:
        warmup = 0.2 if steps == 10 else 0.1  # torch's OneCycleLR divides by zero for a one-step warm-up
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=warmup)
    mixed = str(device).startswith("cuda")
    log, best_state, since_best = FitLog(), None, 0
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        network.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mixed):
            loss = step_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        log.losses.append(float(loss.detach()))
        if validation_loss is None or ((step + 1) % eval_every and step + 1 < steps):
            continue
        network.eval()
        value = validation_loss()
        log.history.append({"step": step + 1, "train_loss": log.losses[-1], "validation_loss": value})
        bar.set_postfix(validation=f"{value:.3f}")
        if value < log.best_validation_loss - 1e-4:
            log.best_validation_loss, best_state, since_best = value, copy.deepcopy(network.state_dict()), 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    # torch's freed activations stay in glibc's arenas otherwise: ~0.9 GB resident after GeneSegNet's
    # training on a 4096 px slide, under whatever the next step holds.
    release_memory()
    return log


def tiles_with_nuclei(
    nuclei, tile: int, *, max_tiles: int, rng: np.random.Generator, bin_size: int = 1, method: str
) -> list[tuple[int, int, int, int]]:
    """Training windows: the tiles of ``tile`` bins (of ``bin_size`` px) that hold a nucleus, at most
    ``max_tiles`` of them drawn at random, in slide order.

    A bin holds a nucleus when the nuclei label at its centre pixel is set (with ``bin_size=1``:
    any nucleus pixel). Windows are ``(y0, y1, x0, x1)`` in bins, clipped to the slide.

    Raises
    ------
    ValueError
        If no tile holds a nucleus (``method`` names who needs them).

    Examples
    --------
    >>> import numpy as np
    >>> nuclei = np.zeros((8, 8), int); nuclei[5, 5] = 1
    >>> tiles_with_nuclei(nuclei, 4, max_tiles=10, rng=np.random.default_rng(0), method="doc")
    [(4, 8, 4, 8)]

    """
    h, w = (-(-int(s) // bin_size) for s in nuclei.shape)
    windows = [
        (int(y), min(int(y) + tile, h), int(x), min(int(x) + tile, w))
        for y in window_origins(h, tile, tile)
        for x in window_origins(w, tile, tile)
    ]
    c = bin_size // 2
    has_nuclei = dask.compute(
        *[(nuclei[y0 * bin_size + c : y1 * bin_size : bin_size, x0 * bin_size + c : x1 * bin_size : bin_size] > 0).any()
          for y0, y1, x0, x1 in windows]
    )  # fmt: skip
    keep = [win for win, found in zip(windows, has_nuclei, strict=True) if found]
    if not keep:
        raise ValueError(f"No nuclei in the image: {method} learns from the nuclei prior (jg.pp.nuclei).")
    if len(keep) > max_tiles:
        keep = [keep[i] for i in np.sort(rng.choice(len(keep), size=max_tiles, replace=False))]
    return keep
