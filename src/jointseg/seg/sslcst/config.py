"""SSL-CST's options that few users change (those they tune are arguments of :func:`jointseg.seg.sslcst`)."""

from __future__ import annotations

from dataclasses import dataclass

from jointseg._core.config import check_positive


@dataclass(frozen=True)
class SSLCSTConfig:
    """Settings of :func:`jointseg.seg.sslcst` and :func:`jointseg.seg.train_sslcst`.

    Parameters
    ----------
    bin_um, n_neighbours, radius_um, distance_scale_um
        Bins and tokens: bin edge; each token's nearest non-empty bins and how far they are looked
        for; the scale of the signed nucleus distances.
    min_gene_counts
        Genes with fewer transcripts are left out of the expression embedding.
    erosion_um, dark_quantile, max_samples
        Sample selection: nuclei eroded by ``erosion_um`` give the positives; negatives are no
        brighter than the stain's ``dark_quantile``; at most ``max_samples`` of each.
    cytoplasm_margin
        Bins outside the nuclei become positives too when their transcripts are at least this many
        nats more likely under one nucleus's expression than under any other candidate's
        (:func:`jointseg.seg.sslcst.samples.tied_cytoplasm`). None (default): the paper's positives
        only. At 2, on the Xenium breast crop, 17% of the positives came from the cytoplasm and the
        refined cells' MECR against matched expansion was -17.3 / -12.8% (seeds 0 / 1) instead of
        -14.5 / -17.5%: no gain beyond the spread between seeds (docs: results).
    validation_fraction
        Held-out share of the samples (by position: the rightmost ones).
    dim, layers, heads
        Transformer width, depth and attention heads.
    batch_size, lr
        Samples per step and AdamW's learning rate.
    tile_um, max_tiles
        Training tiles holding nuclei, drawn at random.
    foreground_threshold, merge_distance_um, max_hole_area_um2
        Post-processing: foreground probability of a cell bin; sinks closer than this make one cell;
        holes up to this area are filled.

    Examples
    --------
    >>> SSLCSTConfig(layers=2).layers
    2

    """

    bin_um: float = 0.5
    n_neighbours: int = 48
    radius_um: float = 6.0
    distance_scale_um: float = 5.0
    min_gene_counts: int = 10
    erosion_um: float = 0.5
    dark_quantile: float = 0.5
    max_samples: int = 20_000
    cytoplasm_margin: float | None = None
    validation_fraction: float = 0.2
    dim: int = 64
    layers: int = 8
    heads: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    tile_um: float = 128.0
    max_tiles: int = 24
    foreground_threshold: float = 0.1
    merge_distance_um: float = 1.5
    max_hole_area_um2: float = 10.0

    def __post_init__(self) -> None:
        if self.n_neighbours < 1 or self.batch_size < 1:
            name = "n_neighbours" if self.n_neighbours < 1 else "batch_size"
            raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        check_positive(self, "bin_um", "radius_um", "distance_scale_um", "dim", "layers", "heads", "lr", "tile_um",
                       "max_tiles", "max_samples")  # fmt: skip
        if self.cytoplasm_margin is not None and not self.cytoplasm_margin >= 0:
            raise ValueError(f"cytoplasm_margin must be >= 0 or None, got {self.cytoplasm_margin}.")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}.")
        if not 0 <= self.dark_quantile <= 1 or not 0 <= self.foreground_threshold < 1:
            raise ValueError("dark_quantile must be in [0, 1] and foreground_threshold in [0, 1).")
