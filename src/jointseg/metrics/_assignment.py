"""Reference-free metrics of transcript assignment."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd

from jointseg._core.constants import UNS_KEY
from jointseg._core.tables import COUNTS_LAYER, raw_counts


def assignment_summary(
    table: ad.AnnData, *, table_key: str = "table", n_transcripts_total: int | None = None
) -> dict[str, float]:
    """Cells, fraction of transcripts assigned, and transcripts per cell of an aggregated table.

    Parameters
    ----------
    table
        A count table: jointseg's (which records how many transcripts there were), or another
        tool's (sopa, a vendor's reader), whose assigned transcripts are its raw counts' sum.
    table_key
        The table's name, under which jointseg records its transcript totals.
    n_transcripts_total
        All transcripts of the slide: needed for a table that jointseg did not make.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> s = jg.metrics.assignment_summary(sdata["table"])
    >>> s["n_cells"]
    5

    """
    info = table.uns.get(UNS_KEY, {}).get(table_key)
    if info is None and n_transcripts_total is None:
        raise ValueError(
            f"Table {table_key!r} was not made by jointseg, so it does not record the slide's transcripts: "
            "pass n_transcripts_total (segmentation_report does, from points_key)."
        )
    if "n_transcripts" in table.obs:
        n = table.obs["n_transcripts"].to_numpy()
    else:
        n = np.asarray(raw_counts(table, COUNTS_LAYER, table_key=table_key).sum(axis=1)).ravel()
    if info is not None:
        assigned, total = info["n_transcripts_assigned"], info["n_transcripts_total"]
    else:
        assigned, total = float(n.sum()), n_transcripts_total
    return {
        "n_cells": int(table.n_obs),
        "fraction_assigned": assigned / max(total, 1),
        "median_transcripts_per_cell": float(np.median(n)) if len(n) else 0.0,
        "mean_transcripts_per_cell": float(np.mean(n)) if len(n) else 0.0,
        "median_area_um2": float(table.obs["area_um2"].median()) if len(n) and "area_um2" in table.obs else np.nan,
    }


def exclusive_marker_pairs(markers: pd.DataFrame, *, genes: list[str] | None = None) -> list[tuple[str, str]]:
    """Gene pairs expected never to be co-expressed, from a positive/negative marker table.

    A pair ``(a, b)`` qualifies when ``a`` is a positive marker of some cell type for which ``b`` is
    a negative marker, and ``b`` is a positive marker of some type for which ``a`` is negative: each
    marks a lineage the other is absent from (Hartman & Satija 2024).

    Parameters
    ----------
    markers
        Tidy table with ``cell_type``, ``gene``, ``kind`` (as :func:`jointseg.datasets.markers`).
    genes
        Keep only pairs of these genes (e.g. the panel).

    """
    pos = markers[markers["kind"] == "positive"].groupby("gene", observed=True)["cell_type"].apply(set)
    neg = markers[markers["kind"] == "negative"].groupby("gene", observed=True)["cell_type"].apply(set)
    candidates = sorted(set(pos.index) & set(neg.index))
    if genes is not None:
        candidates = [g for g in candidates if g in set(genes)]
    pairs = []
    for a, b in itertools.combinations(candidates, 2):
        if pos[a] & neg[b] and pos[b] & neg[a] and not (pos[a] & pos[b]):
            pairs.append((a, b))
    return pairs


def mecr(table: ad.AnnData, pairs: list[tuple[str, str]], *, layer: str | None = "counts") -> float:
    """Mutually exclusive co-expression rate (Hartman & Satija 2024); lower is better.

    For each pair, P(both genes detected in a cell) / P(at least one detected), averaged over pairs.
    It rises when a segmentation mixes neighbouring cells, and also falls when cells shrink, so read
    it together with the fraction of transcripts assigned.
    """
    if not pairs:
        raise ValueError("No mutually exclusive gene pairs given.")
    x = raw_counts(table, layer)
    names = list(table.var_names)
    detected = {g: np.asarray((x[:, names.index(g)] > 0).todense()).ravel() for pair in pairs for g in pair}
    rates = []
    for a, b in pairs:
        either = detected[a] | detected[b]
        if either.any():
            rates.append((detected[a] & detected[b]).sum() / either.sum())
    return float(np.mean(rates))
