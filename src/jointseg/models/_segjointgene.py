"""SegJointGene's semantic network (per-gene channels -> background or a cell type, per bin) and
the trained-model container.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from jointseg._core.trained_model import TrainedModel
from jointseg.models._gene_encoder import BinnedCounts, GeneEncoder
from jointseg.models._unet import ResidualUNet, UNetConfig


@dataclass(frozen=True)
class SemanticConfig:
    """Shape of a :class:`SemanticUNet`.

    Parameters
    ----------
    n_genes, n_types
        Input genes and cell types (outputs: background, then one class per type).
    sigma_bins
        Gaussian width of the gene channels, in bins.
    embedding
        Channels of the 1x1 gene layer.
    widths, blocks_per_scale
        The U-Net after it (see :class:`jointseg.models.UNetConfig`).

    """

    n_genes: int
    n_types: int
    sigma_bins: float = 1.5
    embedding: int = 32
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_scale: int = 1

    def to_dict(self) -> dict:
        """Plain-JSON form (for saving)."""
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> SemanticConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "widths": tuple(d["widths"])})


class SemanticUNet(nn.Module):
    """Gene channels -> per-bin logits of background and each cell type.

    A :class:`jointseg.models.GeneEncoder` (1x1 convolution over the blurred gene channels, computed
    from sparse counts) feeds a :class:`jointseg.models.ResidualUNet` with ``n_types + 1`` outputs.
    :meth:`trunk` takes the embedding, so the CID score can add noise to one gene's channel as
    ``embedding + W[gene] * noise`` (exact, the layer being linear).

    Examples
    --------
    >>> import numpy as np
    >>> from jointseg.models import BinnedCounts
    >>> net = SemanticUNet(SemanticConfig(n_genes=5, n_types=3, widths=(8, 16)))
    >>> empty = BinnedCounts(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32), (32, 32))
    >>> net([empty]).shape
    torch.Size([1, 4, 32, 32])

    """

    def __init__(self, config: SemanticConfig):
        super().__init__()
        self.config = config
        self.encoder = GeneEncoder(config.n_genes, config.embedding, sigma=config.sigma_bins)
        self.unet = ResidualUNet(
            UNetConfig(
                in_channels=config.embedding,
                widths=config.widths,
                blocks_per_scale=config.blocks_per_scale,
                out_channels=config.n_types + 1,
            )
        )

    @property
    def multiple(self) -> int:
        """Window sides must be multiples of this."""
        return self.unet.multiple

    def trunk(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits from an embedding ``(N, embedding, h, w)``."""
        return self.unet(embedding)

    def forward(self, batch: list[BinnedCounts]) -> torch.Tensor:
        return self.trunk(self.encoder(batch))


@dataclass
class SegJointGeneModel(TrainedModel):
    """A trained SegJointGene: the semantic network, its genes and cell types, and the CID scores.

    Parameters
    ----------
    network
        The semantic U-Net.
    genes, types
        Names of its input genes and of its cell types (classes ``1..len(types)``).
    bin_size
        Image pixels per bin of the coarse grid it works on.
    pixel_size_um
        Pixel size of the training slide.
    cid
        ``(types, genes)`` CID information-discarding scores (NaN: not measured).
    support_threshold
        Per type, the CID support a bin needs to be grown into (see :func:`jointseg.seg.segjointgene`).
    type_profiles
        ``(types, genes)`` mean log-normalised nucleus profile of each type on the training slide:
        another slide's nuclei take the type they correlate with best. None in files written before.
    training_log
        Per-iteration log of the joint refinement.
    device
        Where the network runs.

    """

    FORMAT: ClassVar[str] = "jointseg.segjointgene"
    KIND: ClassVar[str] = "SegJointGene"
    NETWORK: ClassVar[type] = SemanticUNet
    CONFIG: ClassVar[type] = SemanticConfig

    network: SemanticUNet
    genes: list[str]
    types: list[str]
    bin_size: int
    pixel_size_um: float
    cid: np.ndarray
    support_threshold: np.ndarray
    type_profiles: np.ndarray | None = None

    @classmethod
    def new(
        cls, config: SemanticConfig, *, genes: list[str], types: list[str], bin_size: int, pixel_size_um: float,
        device: str = "cpu",
    ) -> SegJointGeneModel:  # fmt: skip
        """Untrained model (CID scores NaN, thresholds 0) on ``device``."""
        if config.n_genes != len(genes) or config.n_types != len(types):
            raise ValueError("config.n_genes / n_types must match the gene and type names.")
        return cls(
            network=SemanticUNet(config).to(device),
            genes=list(genes),
            types=list(types),
            bin_size=bin_size,
            pixel_size_um=pixel_size_um,
            cid=np.full((len(types), len(genes)), np.nan),
            support_threshold=np.zeros(len(types)),
            device=device,
        )

    @torch.inference_mode()
    def predict(self, batch: list[BinnedCounts]) -> np.ndarray:
        """Class probabilities ``(N, 1 + n_types, h, w)`` (background first) of equally sized windows."""
        return torch.softmax(self.forward(batch), dim=1).cpu().numpy()
