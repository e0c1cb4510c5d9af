"""A per-cell expression model: what each cell's own transcripts look like, and the background's.

Each cell's profile comes from the transcripts of its core (its anchor, usually the nucleus, grown by
~1.5 um inside the cell), where few transcripts belong to another cell. With ~50 core transcripts a
profile is noisy, so it is shrunk toward the profile of the cell's type: ``prior_counts`` pseudo-
transcripts drawn from it (as Baysor and pciSeq pool cells of a type). Types are k-means clusters
of the cells' whole (input) expression, reassigned by the likelihood of each cell's core under the
type profiles, so a cell whose border was contaminated still gets its own type. The background
(ambient RNA and cells without a nucleus) has its own profile, from the transcripts outside every
cell. Each cell's gene probabilities mix in a share ``ambient`` of the background's, so a stray
transcript never has zero probability. Rates (transcripts per um^2) come from the input cells.

Memory is linear in the non-zero counts: profiles are built per block for the cells and genes that
occur there (:meth:`ExpressionModel.block_log_profiles`), so a 5,000-gene panel costs like a
300-gene one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD

logger = logging.getLogger("jointseg")

#: Cells below this many transcripts in their whole input outline do not shape the types.
_MIN_TYPING_COUNTS = 10
#: A type pools at least this many cells (fewer types on small slides: a profile from a handful of
#: cells is noise, and clusters that small change with any cell).
_MIN_CELLS_PER_TYPE = 25
#: Passes of reassigning types by the likelihood of the cores.
_TYPE_PASSES = 3


@dataclass(frozen=True)
class ExpressionModel:
    """Per-cell gene profiles, type profiles and rates (see the module docstring and :func:`fit_expression_model`).

    Parameters
    ----------
    cell_ids
        The cells' label ids, sorted.
    core_counts
        ``(n_cells, n_genes)`` sparse counts of each cell's core.
    cell_type
        Each cell's type (row of ``type_profiles``).
    type_profiles
        ``(n_types, n_genes)`` gene probabilities per type.
    background
        ``(n_genes,)`` gene probabilities of the background.
    rate_per_um2
        Each cell's transcripts per um^2.
    background_rate_per_um2
        The background's transcripts per um^2.
    prior_counts
        Pseudo-transcripts of its type's profile added to each core.
    ambient
        Share of the background profile mixed into every cell's.
    gene_weights
        ``(n_genes,)`` weight of each gene's log probability (None: all 1).

    """

    cell_ids: np.ndarray
    core_counts: sparse.csr_matrix
    cell_type: np.ndarray
    type_profiles: np.ndarray
    background: np.ndarray
    rate_per_um2: np.ndarray
    background_rate_per_um2: float
    prior_counts: float
    ambient: float
    gene_weights: np.ndarray | None = None

    @property
    def n_types(self) -> int:
        """Number of types."""
        return len(self.type_profiles)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each of ``ids`` (-1 for an id the model does not know)."""
        pos = np.searchsorted(self.cell_ids, ids)
        pos = np.minimum(pos, max(len(self.cell_ids) - 1, 0))
        known = len(self.cell_ids) > 0 and self.cell_ids[pos] == ids
        return np.where(known, pos, -1)

    def block_log_profiles(self, ids: np.ndarray, genes: np.ndarray) -> np.ndarray:
        """``(len(ids) + 1, len(genes))`` log gene probabilities: row 0 the background, then each cell
        of ``ids`` (its shrunk core profile mixed with the ambient), for the gene codes ``genes`` only.
        """
        rows = self.rows(ids)
        selected = self.core_counts[np.maximum(rows, 0)]  # unknown ids: zeroed below, type 0's prior
        core = selected[:, genes].toarray()
        core[rows < 0] = 0
        total = np.asarray(selected.sum(axis=1)).ravel()
        total[rows < 0] = 0
        prior = self.type_profiles[self.cell_type[np.maximum(rows, 0)]][:, genes]
        profile = (core + self.prior_counts * prior) / (total + self.prior_counts)[:, None]
        background = self.background[genes]
        cells = np.log((1 - self.ambient) * profile + self.ambient * background)
        log_profiles = np.vstack([np.log(background)[None], cells])
        return log_profiles if self.gene_weights is None else log_profiles * self.gene_weights[genes]

    def block_rates(self, ids: np.ndarray, bin_area_um2: float) -> np.ndarray:
        """Expected transcripts per bin: the background's, then each of ``ids``'s (the median rate
        for an unknown id).
        """
        rows = self.rows(ids)
        known = self.rate_per_um2[np.maximum(rows, 0)] if len(self.cell_ids) else np.zeros(len(ids))
        fallback = float(np.median(self.rate_per_um2)) if len(self.rate_per_um2) else 1.0
        cells = np.where(rows >= 0, known, fallback)
        return np.concatenate([[self.background_rate_per_um2], cells]) * bin_area_um2


def checked_gene_weights(gene_weights: np.ndarray, n_genes: int) -> np.ndarray:
    """``gene_weights`` as float64, checked: ``n_genes`` finite values >= 0.

    Examples
    --------
    >>> checked_gene_weights([1, 0], 2)
    array([1., 0.])

    """
    gene_weights = np.asarray(gene_weights, np.float64)
    if gene_weights.shape != (n_genes,) or not np.all(np.isfinite(gene_weights) & (gene_weights >= 0)):
        raise ValueError(f"gene_weights must be {n_genes} finite values >= 0, one per gene.")
    return gene_weights


def _cluster_types(cell_counts: sparse.csr_matrix, n_types: int, seed: int) -> np.ndarray:
    """k-means types of the cells' log-normalised expression (on a truncated SVD when the panel is wide)."""
    n_cells, n_genes = cell_counts.shape
    k = max(1, min(n_types, n_cells // _MIN_CELLS_PER_TYPE))
    if k == 1:
        return np.zeros(n_cells, np.int64)
    total = np.asarray(cell_counts.sum(axis=1)).ravel()
    # Normalised and logged in place, in float32, sharing the counts' indices: on a whole slide
    # (116,000 cells) the float64 copies of the matrix and the SVD's work arrays were the
    # refinement's memory peak.
    data = cell_counts.data.astype(np.float32)
    data *= np.repeat((100.0 / np.maximum(total, 1)).astype(np.float32), np.diff(cell_counts.indptr))
    np.log1p(data, out=data)
    x = sparse.csr_matrix((data, cell_counts.indices, cell_counts.indptr), shape=cell_counts.shape)
    n_components = min(30, n_genes - 1, n_cells - 1)
    if n_components >= 2:
        x = TruncatedSVD(n_components, random_state=seed).fit_transform(x)
    else:
        x = x.toarray()
    return KMeans(k, n_init=4, random_state=seed).fit_predict(x).astype(np.int64)


def fit_expression_model(
    cell_ids: np.ndarray,
    core_counts: sparse.csr_matrix,
    cell_counts: sparse.csr_matrix,
    cell_area_um2: np.ndarray,
    background_counts: np.ndarray,
    background_area_um2: float,
    *,
    n_types: int = 15,
    prior_counts: float = 30.0,
    ambient: float = 0.1,
    seed: int = 0,
    order: np.ndarray | None = None,
    gene_weights: np.ndarray | None = None,
) -> ExpressionModel:
    """Fit the per-cell expression model from counts.

    Parameters
    ----------
    cell_ids
        Sorted label ids of the cells.
    core_counts, cell_counts
        ``(n_cells, n_genes)`` counts of each cell's core and of its whole input outline.
    cell_area_um2
        Each cell's input area.
    background_counts, background_area_um2
        Counts per gene outside every cell, and that area.
    n_types
        Clusters the type profiles come from (fewer when there are not 25 cells per type).
    prior_counts
        Pseudo-transcripts of its type's profile added to each cell's core counts.
    ambient
        Share of the background profile mixed into each cell's.
    seed
        Seed of the clustering.
    order
        The order the cells are clustered in (a permutation of their rows; default: by id). Give
        one that does not depend on the ids (e.g. by position) so that cells numbered differently
        get the same types.
    gene_weights
        ``(n_genes,)`` non-negative weight of each gene's evidence (see the module docstring; None: all 1).

    Examples
    --------
    >>> from scipy import sparse
    >>> core = sparse.csr_matrix(np.array([[9, 1], [1, 9]]))
    >>> model = fit_expression_model(np.array([1, 2]), core, core, np.ones(2), np.ones(2), 1.0, n_types=2)
    >>> model.block_log_profiles(np.array([2]), np.array([0, 1])).argmax(axis=1)
    array([0, 1])

    """
    cell_ids = np.asarray(cell_ids, np.int64)
    if gene_weights is not None:
        gene_weights = checked_gene_weights(gene_weights, core_counts.shape[1])
    if np.any(np.diff(cell_ids) <= 0):
        raise ValueError("cell_ids must be sorted and unique.")
    core_counts, cell_counts = sparse.csr_matrix(core_counts), sparse.csr_matrix(cell_counts)
    n_genes = core_counts.shape[1]
    order = np.arange(len(cell_ids)) if order is None else np.asarray(order)
    typing = order[np.asarray(cell_counts.sum(axis=1)).ravel()[order] >= _MIN_TYPING_COUNTS]
    types = np.zeros(len(cell_ids), np.int64)
    if len(typing) >= 2:
        types[typing] = _cluster_types(cell_counts[typing], n_types, seed)
    k = int(types.max(initial=0)) + 1
    for _ in range(_TYPE_PASSES):
        # Summed by a (type x cell) indicator product: selecting each type's rows copied them, 0.3 GB
        # above the resting size on a whole slide's cells.
        member = sparse.csr_matrix((np.ones(len(types)), (types, np.arange(len(types)))), shape=(k, len(types)))
        pooled = np.asarray((member @ cell_counts).todense()) + 1.0
        profiles = pooled / pooled.sum(axis=1, keepdims=True)
        new = np.asarray(core_counts @ np.log(profiles).T).argmax(axis=1) if len(cell_ids) else types
        if np.array_equal(new, types):
            break
        types = new
    background = np.asarray(background_counts, np.float64) + 1.0
    background /= background.sum()
    rates = (np.asarray(cell_counts.sum(axis=1)).ravel() + 1.0) / (np.asarray(cell_area_um2, np.float64) + 1.0)
    background_rate = max(float(np.sum(background_counts)) / max(background_area_um2, 1e-9), 1e-4)
    logger.info(
        "Expression model: %d cells in %d types, %d genes; median %.0f core transcripts per cell, "
        "%.2f transcripts/um^2 in cells vs %.2f in the background.",
        len(cell_ids), k, n_genes, float(np.median(np.asarray(core_counts.sum(axis=1)))) if len(cell_ids) else 0.0,
        float(np.median(rates)) if len(rates) else 0.0, background_rate,
    )  # fmt: skip
    return ExpressionModel(
        cell_ids, core_counts, types, profiles, background, rates, background_rate, prior_counts, ambient, gene_weights
    )
