"""SSL-CST's tokens: non-empty bins of transcripts, each centre bin's nearest non-empty bins, and the
signed distance of every bin to the nearest nucleus centroid.

Coordinates are in bins of the coarse grid: bin ``(i, j)`` covers image pixels
``[i * b, (i + 1) * b) x [j * b, (j + 1) * b)`` and sits at ``(i, j)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from jointseg._core.transcripts import TranscriptIndex
from jointseg.models import SSLCSTModel, TokenBatch, bin_transcripts


@dataclass(frozen=True)
class BinTable:
    """Non-empty bins (global bin coordinates ``y``, ``x``) and their genes as CSR rows, weighted by
    ``log1p`` of the counts.
    """

    y: np.ndarray
    x: np.ndarray
    offsets: np.ndarray
    genes: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def read(cls, index: TranscriptIndex, window: tuple[int, int, int, int], *, bin_size: int, gene_lut: np.ndarray):
        """The non-empty bins of ``window = (y0, y1, x0, x1)`` (in bins)."""
        counts = bin_transcripts(index, window, bin_size=bin_size, gene_lut=gene_lut)
        key = counts.y * counts.shape[1] + counts.x
        order = np.lexsort((counts.gene, key))
        key = key[order]
        first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
        starts = np.flatnonzero(first)
        y, x = np.divmod(key[starts], counts.shape[1])
        return cls(
            y=y + window[0],
            x=x + window[2],
            offsets=np.r_[starts, len(key)].astype(np.int64),
            genes=counts.gene[order].astype(np.int64),
            weights=np.log1p(counts.count[order]).astype(np.float32),
        )

    @classmethod
    def concat(cls, tables: list[BinTable]) -> BinTable:
        """One table with the rows of ``tables`` in order."""
        shifts = np.cumsum([0] + [len(t.genes) for t in tables[:-1]])
        offsets = [t.offsets[:-1] + s for t, s in zip(tables, shifts, strict=True)]
        return cls(
            y=np.concatenate([t.y for t in tables]),
            x=np.concatenate([t.x for t in tables]),
            offsets=np.r_[np.concatenate(offsets), sum(len(t.genes) for t in tables)].astype(np.int64),
            genes=np.concatenate([t.genes for t in tables]),
            weights=np.concatenate([t.weights for t in tables]),
        )

    def bags(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:class:`~torch.nn.EmbeddingBag` inputs (genes, offsets, weights) of ``rows``."""
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        bag_starts = np.cumsum(lengths) - lengths
        flat = np.repeat(self.offsets[rows] - bag_starts, lengths) + np.arange(lengths.sum())
        return self.genes[flat], bag_starts, self.weights[flat]


@dataclass(frozen=True)
class NucleusCentres:
    """Nucleus centroids and equivalent-disc radii, in bins, with a KD-tree for nearest queries."""

    ids: np.ndarray
    y: np.ndarray
    x: np.ndarray
    radius: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tree(self) -> cKDTree:
        """KD-tree of the centroids (built once)."""
        if "_tree" not in self.__dict__:
            object.__setattr__(self, "_tree", cKDTree(np.c_[self.y, self.x]))
        return self.__dict__["_tree"]

    def signed_distance(self, y: np.ndarray, x: np.ndarray, *, scale: float, cap: float = 4.0) -> np.ndarray:
        """Distance to the nearest centroid minus that nucleus's radius (negative inside it), over
        ``scale``, at most ``cap``.
        """
        if len(self) == 0:
            return np.full(len(y), cap, np.float32)
        d, i = self.tree.query(np.c_[y, x])
        return np.minimum((d - self.radius[i]) / scale, cap).astype(np.float32)


def nucleus_centres(nuclei, bin_size: int) -> NucleusCentres:
    """Centroids and radii (in bins) of every nucleus of lazy labels, chunk by chunk."""

    def chunk_sums(block: np.ndarray, y0: int, x0: int) -> pd.DataFrame:
        ids, inverse = np.unique(block.ravel(), return_inverse=True)
        yy, xx = np.indices(block.shape)
        sums = {
            "n": np.bincount(inverse),
            "y": np.bincount(inverse, yy.ravel() + y0),
            "x": np.bincount(inverse, xx.ravel() + x0),
        }
        return pd.DataFrame(sums, index=ids)[ids > 0]

    starts = [np.r_[0, np.cumsum(c)[:-1]] for c in nuclei.chunks]
    blocks = nuclei.to_delayed()
    parts = dask.compute(
        *[
            dask.delayed(chunk_sums)(blocks[i, j], int(starts[0][i]), int(starts[1][j]))
            for i in range(blocks.shape[0])
            for j in range(blocks.shape[1])
        ]
    )
    table = pd.concat(parts).groupby(level=0).sum()
    half = (bin_size - 1) / 2
    n = table["n"].to_numpy(float)
    return NucleusCentres(
        ids=table.index.to_numpy(np.int64),
        y=(table["y"].to_numpy() / np.maximum(n, 1) - half) / bin_size,
        x=(table["x"].to_numpy() / np.maximum(n, 1) - half) / bin_size,
        radius=np.sqrt(n / np.pi) / bin_size,
    )


def bin_tree(table: BinTable) -> cKDTree:
    """KD-tree of a table's bins for nearest-neighbour queries, with ties broken the same way in
    every block.

    Bins sit on an integer grid, so many are equally far from a centre, and a KD-tree breaks such
    ties by its own layout, which depends on which bins a block holds: the tokens, and the network's
    output, would change with the block size. Each bin is moved by less than 1e-3 bins by a fixed
    function of its global position, which makes distances distinct and the choice the same for
    every block.
    """
    key = (table.y.astype(np.uint64) * np.uint64(2654435761) + table.x.astype(np.uint64) * np.uint64(40503)) % 9973
    jitter = (key.astype(np.float64) + 1) / 9974 * 1e-3
    return cKDTree(np.c_[table.y + jitter, table.x + 0.7 * jitter])


@dataclass(frozen=True)
class Neighbourhoods:
    """Tokens of centre bins, as rows of a :class:`BinTable` (-1: empty centre or no neighbour)."""

    token_bin: np.ndarray
    position: np.ndarray
    distance: np.ndarray
    valid: np.ndarray

    def batch(self, table: BinTable, rows: np.ndarray | slice = slice(None)) -> TokenBatch:
        """The :class:`TokenBatch` of centre bins ``rows``, without the token columns none of them uses
        (neighbours are nearest first, so the valid tokens come first).
        """
        valid = self.valid[rows]
        cols = slice(0, int(valid.sum(axis=1).max(initial=1)))
        token_bin = self.token_bin[rows][:, cols]
        used, local = np.unique(token_bin, return_inverse=True)
        local = local.reshape(token_bin.shape)
        if len(used) and used[0] == -1:  # -1 stays -1
            used, local = used[1:], local - 1
        genes, offsets, weights = table.bags(used)
        return TokenBatch(
            genes=genes, offsets=offsets, weights=weights, token_bin=local, position=self.position[rows][:, cols],
            distance=self.distance[rows][:, cols], valid=valid[:, cols],
        )  # fmt: skip


def neighbourhoods(
    table: BinTable,
    table_distance: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    centre_distance: np.ndarray,
    *,
    n_neighbours: int,
    radius: float,
    tree: cKDTree | None = None,
) -> Neighbourhoods:
    """Tokens of the centre bins ``(y, x)``: the centre itself, then its ``n_neighbours`` nearest
    non-empty bins of ``table`` within ``radius`` bins (nearest first).

    ``table_distance`` and ``centre_distance`` are the signed nucleus distances of the table's
    bins and of the centres; ``tree`` the table's :func:`bin_tree` (built if not given).
    """
    q = len(y)
    tokens = n_neighbours + 1
    token_bin = np.full((q, tokens), -1, np.int64)
    position = np.zeros((q, tokens, 2), np.float32)
    distance = np.zeros((q, tokens), np.float32)
    valid = np.zeros((q, tokens), bool)
    valid[:, 0] = True
    distance[:, 0] = centre_distance
    if len(table) == 0 or q == 0:
        return Neighbourhoods(token_bin, position, distance, valid)
    tree = tree or bin_tree(table)
    k = min(n_neighbours + 1, len(table))
    d, i = tree.query(np.c_[y, x], k=k, distance_upper_bound=radius)
    d, i = d.reshape(q, k), i.reshape(q, k)
    found = np.isfinite(d)
    is_self = found[:, 0] & (d[:, 0] < 0.5)
    token_bin[is_self, 0] = i[is_self, 0]
    # Neighbours: the k nearest minus the centre itself, at most n_neighbours of them.
    shifted = np.where(is_self[:, None], np.c_[i[:, 1:], np.full(q, len(table))], i)[:, :n_neighbours]
    ok = shifted < len(table)
    m = shifted.shape[1]
    token_bin[:, 1 : m + 1] = np.where(ok, shifted, -1)
    valid[:, 1 : m + 1] = ok
    safe = np.where(ok, shifted, 0)
    position[:, 1 : m + 1, 0] = np.where(ok, (table.y[safe] - y[:, None]) / radius, 0)
    position[:, 1 : m + 1, 1] = np.where(ok, (table.x[safe] - x[:, None]) / radius, 0)
    distance[:, 1 : m + 1] = np.where(ok, table_distance[safe], 0)
    return Neighbourhoods(token_bin, position, distance, valid)


def token_geometry(table: BinTable, centres: NucleusCentres, settings: dict) -> tuple[cKDTree, np.ndarray]:
    """A table's KD-tree and its bins' signed nucleus distances, shared by all its token queries."""
    return bin_tree(table), centres.signed_distance(table.y, table.x, scale=settings["distance_scale_bins"])


def tokens_of(
    table: BinTable, geometry: tuple, centres: NucleusCentres, y: np.ndarray, x: np.ndarray, settings: dict
) -> Neighbourhoods:
    """Tokens of the centre bins ``(y, x)`` from ``table`` and its :func:`token_geometry`."""
    tree, table_distance = geometry
    return neighbourhoods(
        table,
        table_distance,
        y,
        x,
        centres.signed_distance(y, x, scale=settings["distance_scale_bins"]),
        n_neighbours=settings["n_neighbours"],
        radius=settings["radius_bins"],
        tree=tree,
    )


def token_settings(model: SSLCSTModel) -> dict:
    """A model's token settings in bins: neighbours per token, search radius, nucleus-distance scale."""
    return {
        "n_neighbours": model.n_neighbours,
        "radius_bins": model.radius_bins,
        "distance_scale_bins": model.distance_scale_um / (model.bin_size * model.pixel_size_um),
    }
