"""The marker-vote evidence behind each cluster's pseudolabel."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from spatialdata import SpatialData

from jointseg._core.constants import TABLE_KEY, UNS_KEY
from jointseg.tl import vote_margin


def cluster_votes(sdata: SpatialData, *, table_key: str = TABLE_KEY, ax: Axes | None = None) -> Axes:
    """Heatmap of the marker votes of every Leiden cluster (rows) for every coarse class (columns),
    as shares of the cluster's votes, after :func:`jointseg.tl.pseudolabels`.

    Each row is labelled with the cluster, its cells, the class it took (``Unknown`` when the votes
    were too few or too close) and its vote margin; the winning cell of a row is outlined. A
    Neoplastic cluster won the Epithelial vote (outlined, dashed) and passed the cancer-programme
    enrichment: its row also gives the enrichment q-value. Use it to see which labels the evidence
    supports clearly and which it barely decides.

    Parameters
    ----------
    sdata
        SpatialData with a table labelled by :func:`jointseg.tl.pseudolabels`.
    table_key
        The table.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    The axes.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> jg.tl.pseudolabels(sdata, markers={"T cells": ["T0_0", "T0_1"], "Fibroblasts": ["T1_0", "T1_1"]},
    ...                    fallback_markers=None, min_votes=1, min_counts=1)
    >>> ax = jg.pl.cluster_votes(sdata)

    """
    info = sdata[table_key].uns.get(UNS_KEY, {}).get("pseudolabels")
    if info is None:
        raise KeyError(f"Table {table_key!r} has no pseudolabels; run jg.tl.pseudolabels(sdata) first.")
    clusters = sorted(info["clusters"].items(), key=lambda kv: (kv[1]["label"], -kv[1]["n_cells"]))
    classes = sorted({c for _, v in clusters for c in v["votes"]})
    shares = np.zeros((len(clusters), max(len(classes), 1)))
    for i, (_, v) in enumerate(clusters):
        total = sum(v["votes"].values())
        for c, n in v["votes"].items():
            shares[i, classes.index(c)] = n / total if total else 0.0
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(classes) + 4, 0.4 * len(clusters) + 1.5))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, (_, v) in enumerate(clusters):
        won = "Epithelial" if v["label"] == "Neoplastic" else v["label"]
        if won in classes:
            style = "--" if v["label"] == "Neoplastic" else "-"
            ax.add_patch(
                plt.Rectangle(
                    (classes.index(won) - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="crimson", linewidth=2, ls=style
                )
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    rows = [
        f"{name} ({v['n_cells']} cells): {v['label']}, margin {vote_margin(pd.Series(v['votes'], dtype=float)):.2f}"
        + (f", cancer q {v['cancer_q']:.2g}" if v["label"] == "Neoplastic" else "")
        for name, v in clusters
    ]
    ax.set_yticks(range(len(clusters)), rows)
    ax.figure.colorbar(image, ax=ax, label="share of the cluster's marker votes")
    ax.set_title("marker votes per cluster")
    return ax
