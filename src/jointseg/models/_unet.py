"""Residual U-Net with a cell-probability head and a 2-channel centre-offset head (GeneSegNet)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`ResidualUNet`.

    Parameters
    ----------
    in_channels
        Input channels (GeneSegNet: stain and RNA location map).
    widths
        Feature channels per scale, finest first; one 2x2 max-pool between scales.
    blocks_per_scale
        Residual blocks per scale in the encoder and in the decoder.
    out_channels
        Output channels: cell-probability logit, then the ``(dy, dx)`` offset to the cell centre.

    """

    in_channels: int = 2
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks_per_scale: int = 1
    out_channels: int = 3

    def to_dict(self) -> dict:
        """Plain-JSON form (for saving)."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "widths": tuple(d["widths"])})


class ResidualBlock(nn.Module):
    """Pre-activation residual block: two BN-ReLU-Conv3x3, plus a 1x1 projection when widths differ."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _stage(c_in: int, c_out: int, n: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(c_in, c_out), *(ResidualBlock(c_out, c_out) for _ in range(n - 1)))


class ResidualUNet(nn.Module):
    """GeneSegNet's network: residual U-Net, max-pool down, bilinear up, skips added.

    Outputs ``(N, 3, H, W)``: channel 0 is the cell-probability logit, channels 1-2 the offset
    ``(dy, dx)`` from each pixel to its cell's centre, in units of :attr:`OFFSET_SCALE` pixels.
    ``H`` and ``W`` must be multiples of ``2 ** (len(widths) - 1)``.

    Examples
    --------
    >>> import torch
    >>> net = ResidualUNet(UNetConfig(widths=(8, 16)))
    >>> net(torch.zeros(1, 2, 32, 32)).shape
    torch.Size([1, 3, 32, 32])

    """

    #: Offsets are regressed in units of this many pixels, so targets are of order one.
    OFFSET_SCALE = 8.0

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        w = config.widths
        n = config.blocks_per_scale
        self.stem = nn.Conv2d(config.in_channels, w[0], 3, padding=1, bias=False)
        self.down = nn.ModuleList([_stage(w[0], w[0], n)] + [_stage(w[i - 1], w[i], n) for i in range(1, len(w))])
        self.lateral = nn.ModuleList([nn.Conv2d(w[i + 1], w[i], 1, bias=False) for i in range(len(w) - 1)])
        self.up = nn.ModuleList([_stage(w[i], w[i], n) for i in range(len(w) - 1)])
        self.head = nn.Sequential(nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True), nn.Conv2d(w[0], config.out_channels, 1))

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** (len(self.config.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.stem(x)
        for level, stage in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            skips.append(x)
        for level in range(len(self.up) - 1, -1, -1):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.up[level](self.lateral[level](x) + skips[level])
        return self.head(x)
