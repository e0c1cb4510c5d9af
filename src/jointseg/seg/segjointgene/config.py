"""SegJointGene's options that few users change (those they tune are arguments of :func:`jointseg.seg.segjointgene`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jointseg._core.config import check_positive


@dataclass(frozen=True)
class SegJointGeneConfig:
    """Settings of :func:`jointseg.seg.segjointgene` and :func:`jointseg.seg.train_segjointgene`.

    Parameters
    ----------
    bin_um, gene_sigma_um
        Bin edge and the gene channels' Gaussian width, in microns.
    min_gene_counts
        Genes with fewer transcripts are left out of the network (and get no CID score).
    min_nucleus_counts
        Nuclei with fewer transcripts get no initial type (their type is read from the network).
    confidence
        The growth rule's smoothed network confidence threshold.
    min_density_per_um2
        Warm-up labels: nuclei grow only where the transcript density reaches this
        (as :func:`jointseg.seg.expand_nuclei`).
    tile_um, max_tiles
        Training tiles: edge in microns, and how many, drawn among those holding nuclei.
    cid_windows, cid_steps
        CID windows (32 x 32 bins each) and optimiser steps.
    cid_estimator, cid_samples, cid_probes
        How CID measures the logits' distortion: ``"expected"``, the closed form of the linearised
        network from ``cid_probes`` backward passes per type (cost independent of the panel size), or
        ``"sampled"``, ``cid_samples`` Monte-Carlo noise passes per pair and step (the paper; cost
        grows with genes x types). See :mod:`jointseg.seg.segjointgene.cid`.
    widths
        U-Net widths per scale.

    Examples
    --------
    >>> SegJointGeneConfig(cid_steps=5).cid_steps
    5

    """

    bin_um: float = 1.0
    gene_sigma_um: float = 1.5
    min_gene_counts: int = 20
    min_nucleus_counts: int = 10
    confidence: float = 0.5
    min_density_per_um2: float = 0.15
    tile_um: float = 128.0
    max_tiles: int = 24
    cid_windows: int = 6
    cid_steps: int = 20
    cid_estimator: Literal["expected", "sampled"] = "expected"
    cid_samples: int = 2
    cid_probes: int = 16
    widths: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self) -> None:
        check_positive(self, "bin_um", "gene_sigma_um", "tile_um", "max_tiles", "cid_windows", "cid_samples",
                       "cid_probes")  # fmt: skip
        if self.cid_steps < 1:
            raise ValueError(f"cid_steps must be >= 1, got {self.cid_steps}.")
        if self.cid_estimator not in ("expected", "sampled"):
            raise ValueError(f"cid_estimator must be 'expected' or 'sampled', got {self.cid_estimator!r}.")
        if not 0 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0, 1), got {self.confidence}.")
