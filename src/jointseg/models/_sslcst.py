"""SSL-CST's point transformer (Wang et al. 2025, built on SCS, Chen et al. 2023): for one bin of
transcripts and its nearest non-empty bins, the direction to its cell's centre and whether it is in
a cell.

Each token is a bin: its expression, its position relative to the centre bin and its signed
distance to the nearest nucleus centroid, projected and summed (the paper's Eq. 5). The expression
projection is an :class:`torch.nn.EmbeddingBag` over the bin's genes, weighted by ``log1p`` of
the counts: it equals ``counts @ W1`` for the dense expression vector, but costs one row of ``W1``
per detected gene, so a 5,000-gene panel costs no more per token than a 300-gene one and the
``G``-long vectors are never built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jointseg._core.trained_model import TrainedModel


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of :class:`PointTransformer`.

    Parameters
    ----------
    n_genes
        Genes of the expression embedding.
    dim, layers, heads
        Token width, encoder layers and attention heads (the papers: 64, 8, 1).
    mlp_ratio
        Hidden width of each layer's MLP, in multiples of ``dim``.
    dropout
        Dropout after each MLP layer (the paper's Algorithm 2).
    n_directions
        Direction classes over the full circle.

    """

    n_genes: int
    dim: int = 64
    layers: int = 8
    heads: int = 1
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    n_directions: int = 16

    def to_dict(self) -> dict[str, Any]:
        """Plain settings, for model files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


@dataclass
class TokenBatch:
    """Inputs of :class:`PointTransformer` for ``B`` centre bins of ``T`` tokens each.

    ``genes``/``offsets``/``weights`` are the :class:`~torch.nn.EmbeddingBag` inputs of ``U``
    distinct non-empty bins; ``token_bin`` ``(B, T)`` indexes them (-1: an empty bin, whose
    expression is zero). ``position`` ``(B, T, 2)`` is ``(dy, dx)`` to the centre bin in units of
    the neighbourhood radius, ``distance`` ``(B, T)`` the signed nucleus distance of each token,
    and ``valid`` ``(B, T)`` marks real tokens (token 0, the centre, always is).
    """

    genes: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray
    token_bin: np.ndarray
    position: np.ndarray
    distance: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.token_bin)

    def tensors(self, device: str) -> dict[str, torch.Tensor]:
        """The batch as tensors on ``device``."""
        return {
            "genes": torch.from_numpy(self.genes.astype(np.int64)).to(device),
            "offsets": torch.from_numpy(self.offsets.astype(np.int64)).to(device),
            "weights": torch.from_numpy(self.weights.astype(np.float32)).to(device),
            "token_bin": torch.from_numpy(self.token_bin.astype(np.int64)).to(device),
            "position": torch.from_numpy(self.position.astype(np.float32)).to(device),
            "distance": torch.from_numpy(self.distance.astype(np.float32)).to(device),
            "valid": torch.from_numpy(self.valid).to(device),
        }


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads}).")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, *, first_only: bool = False) -> torch.Tensor:
        """Attention of every token (or, with ``first_only``, of token 0 alone) over the valid tokens."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if first_only:
            q = q[:, :, :1]
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
        return self.out(mixed.transpose(1, 2).reshape(b, q.shape[2], d))


class _RMLP(nn.Sequential):
    """SSL-CST's MLP: bias-free linear layers, each followed by GELU (the first) and dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(
            nn.Linear(dim, hidden, bias=False),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim, bias=False),
            nn.Dropout(dropout),
        )


class _EncoderLayer(nn.Module):
    """Pre-LayerNorm layer (the paper's Eqs. 10-11)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim)
        self.attention = _Attention(config.dim, config.heads)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = _RMLP(config.dim, int(config.dim * config.mlp_ratio), config.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, *, first_only: bool = False) -> torch.Tensor:
        mixed = self.attention(self.norm1(x), valid, first_only=first_only)
        x = (x[:, :1] if first_only else x) + mixed
        return x + self.mlp(self.norm2(x))


class PointTransformer(nn.Module):
    """Tokens -> ``n_directions`` direction logits and one foreground logit per centre bin.

    Examples
    --------
    >>> import numpy as np
    >>> from jointseg.models import PointTransformer, TokenBatch, TransformerConfig
    >>> net = PointTransformer(TransformerConfig(n_genes=5, dim=16, layers=2))
    >>> batch = TokenBatch(genes=np.array([0, 3]), offsets=np.array([0]), weights=np.ones(2),
    ...                    token_bin=np.array([[0, -1]]), position=np.zeros((1, 2, 2)),
    ...                    distance=np.zeros((1, 2)), valid=np.array([[True, False]]))
    >>> net(**batch.tensors("cpu")).shape
    torch.Size([1, 17])

    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.expression = nn.EmbeddingBag(config.n_genes, config.dim, mode="sum")
        self.position = nn.Linear(2, config.dim, bias=False)
        self.distance = nn.Linear(1, config.dim)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.n_directions + 1)
        nn.init.normal_(self.expression.weight, std=0.02)

    def forward(self, genes, offsets, weights, token_bin, position, distance, valid) -> torch.Tensor:
        """Logits ``(B, n_directions + 1)``: direction classes, then foreground."""
        bins = self.expression(genes, offsets, per_sample_weights=weights)
        bins = torch.cat([bins.new_zeros(1, bins.shape[1]), bins])  # row 0: empty bins
        x = bins[token_bin + 1] + self.position(position) + self.distance(distance[..., None])
        # Only the centre token's output is read: the last layer computes it alone (same result).
        for i, layer in enumerate(self.layers):
            x = layer(x, valid, first_only=i == len(self.layers) - 1)
        return self.head(self.norm(x[:, 0]))


@dataclass
class SSLCSTModel(TrainedModel):
    """A trained SSL-CST network and the binning and token settings it was trained with.

    Parameters
    ----------
    network
        The point transformer.
    genes
        Names of its genes (embedding rows, in order).
    bin_size
        Image pixels per bin.
    pixel_size_um
        Pixel size of the training slide.
    n_neighbours, radius_bins
        Tokens per centre bin besides itself, and how far (in bins) they are looked for.
    distance_scale_um
        Signed nucleus distances are divided by this.
    training_log
        Steps, losses and the early-stopping record.
    device
        Where the network runs.

    """

    FORMAT: ClassVar[str] = "jointseg-sslcst"
    KIND: ClassVar[str] = "SSL-CST"
    NETWORK: ClassVar[type] = PointTransformer
    CONFIG: ClassVar[type] = TransformerConfig

    network: PointTransformer
    genes: list[str]
    bin_size: int
    pixel_size_um: float
    n_neighbours: int
    radius_bins: float
    distance_scale_um: float

    @classmethod
    def new(cls, config: TransformerConfig, *, genes: list[str], device: str = "cpu", **settings) -> SSLCSTModel:
        """Untrained model on ``device``; ``settings`` are the other fields."""
        if config.n_genes != len(genes):
            raise ValueError(f"config.n_genes ({config.n_genes}) must match the {len(genes)} gene names.")
        return cls(network=PointTransformer(config).to(device), genes=list(genes), device=device, **settings)

    @torch.inference_mode()
    def predict(self, batch: TokenBatch) -> tuple[np.ndarray, np.ndarray]:
        """Foreground probability ``(B,)`` and direction probabilities ``(B, n_directions)``."""
        logits = self.forward(**batch.tensors(self.device))
        return torch.sigmoid(logits[:, -1]).cpu().numpy(), torch.softmax(logits[:, :-1], dim=1).cpu().numpy()
