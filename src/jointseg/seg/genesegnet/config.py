"""GeneSegNet's options that few users change (the ones they tune are arguments of :func:`jointseg.seg.genesegnet`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jointseg._core.config import check_positive
from jointseg.models import UNetConfig


@dataclass(frozen=True)
class GeneSegNetConfig:
    """Settings of :func:`jointseg.seg.genesegnet` and :func:`jointseg.seg.train_genesegnet`.

    Parameters
    ----------
    sigma_um
        Gaussian width of the RNA location map (the paper: 7 px at ~0.2 um/px).
    min_density_per_um2
        Round-0 labels: nuclei grow only where the transcript density reaches this
        (as :func:`jointseg.seg.expand_nuclei`).
    stop_iou
        Self-training stops when consecutive rounds' labels agree above this mean best-match IoU.
    working_pixel_size_um
        The network's pixel size: a slide with finer pixels is smoothed and sampled onto a grid of
        this size for training and inference, and the fields are sampled back onto the slide's pixels.
        The network then sees cells at the same size in pixels on every platform (Xenium 0.2125,
        MERSCOPE 0.108 um/px), as cellpose rescales images to the diameter it was trained at; its
        offsets, in pixels, stay within what its windows can see. A model applied to another slide
        runs on the grid it was trained on. None: the slide's own pixels.
    batch_size, crop_size, lr
        Crops per step, crop edge in the network's pixels (before scale jitter), and AdamW's peak
        learning rate (one-cycle schedule, weight decay 1e-5).
    tile_size, max_tiles
        Training tiles (the network's pixels) and how many, drawn among those holding nuclei.
    window, stride
        Inference window and step in the network's pixels (the paper's code: 256 / 240); ``window``
        a multiple of 8.
    network
        Shape of the residual U-Net.

    Examples
    --------
    >>> GeneSegNetConfig(lr=2e-3).lr
    0.002

    """

    sigma_um: float = 1.4
    working_pixel_size_um: float | None = 0.5
    min_density_per_um2: float = 0.15
    stop_iou: float = 0.93
    batch_size: int = 8
    crop_size: int = 128
    lr: float = 1e-3
    tile_size: int = 512
    max_tiles: int = 24
    window: int = 256
    stride: int = 224
    network: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        check_positive(self, "sigma_um", "batch_size", "crop_size", "lr", "tile_size", "max_tiles")
        if self.window % 8 or not 0 < self.stride <= self.window:
            raise ValueError(
                f"window must be a multiple of 8 and 0 < stride <= window; got {self.window}, {self.stride}."
            )
        if self.working_pixel_size_um is not None and not self.working_pixel_size_um > 0:
            raise ValueError(f"working_pixel_size_um must be > 0 or None, got {self.working_pixel_size_um}.")
        if not 0 < self.stop_iou <= 1:
            raise ValueError(f"stop_iou must be in (0, 1], got {self.stop_iou}.")
