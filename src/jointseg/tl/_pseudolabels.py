"""Cell-type pseudolabels from the transcriptome (Hirose/Nishimura): Leiden clusters, Wilcoxon DEGs,
rank-weighted marker votes for coarse classes, and a neoplastic refinement by gene-set enrichment.
"""

from __future__ import annotations

import logging
import os

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy.stats import false_discovery_control, hypergeom
from spatialdata import SpatialData

from jointseg._core.constants import TABLE_KEY, UNS_KEY
from jointseg._core.tables import raw_counts
from jointseg.tl._leiden import leiden_clusters
from jointseg.tl._markers import COARSE_CLASSES, gene_set, marker_table

logger = logging.getLogger("jointseg")


def marker_votes(top_genes: list[str], markers: pd.DataFrame) -> pd.Series:
    """Votes per coarse class of a cluster's ranked DEGs: the ``l``-th of ``N`` genes (from 0) adds
    ``N - l`` to every class it marks.

    Examples
    --------
    >>> m = pd.DataFrame({"gene": ["CD3E", "LUM", "CD2"],
    ...                   "coarse_class": ["Inflammatory", "Connective", "Inflammatory"]})
    >>> marker_votes(["CD3E", "XIST", "CD2", "LUM"], m).to_dict()
    {'Connective': 1, 'Inflammatory': 6}

    """
    n = len(top_genes)
    weight = pd.Series({g: n - rank for rank, g in reversed(list(enumerate(top_genes)))})
    hits = markers[["gene", "coarse_class"]].drop_duplicates()
    hits = hits[hits["gene"].isin(weight.index)]
    return hits.assign(w=weight.reindex(hits["gene"]).to_numpy()).groupby("coarse_class")["w"].sum().sort_index()


def vote_margin(votes: pd.Series) -> float:
    """How clearly the winning class leads: (best - runner-up) / all votes; 0 without votes.

    Examples
    --------
    >>> vote_margin(pd.Series({"Epithelial": 30.0, "Connective": 10.0}))
    0.5

    """
    total = float(votes.sum())
    if total <= 0:
        return 0.0
    top = np.sort(votes.to_numpy(dtype=float))[::-1]
    return float((top[0] - (top[1] if len(top) > 1 else 0.0)) / total)


def cancer_enrichment(top_genes: list[str], cancer: set[str], panel: set[str]) -> float:
    """One-sided hypergeometric p-value that ``top_genes`` hold more genes of ``cancer`` than as many
    genes drawn at random from ``panel`` would: the paper's overlap rule, made aware of how many
    cancer genes the panel holds (a cancer panel holds many; a random draw already overlaps it).

    Examples
    --------
    >>> panel = {f"G{i}" for i in range(100)}
    >>> cancer = {f"G{i}" for i in range(10)}
    >>> round(cancer_enrichment(["G0", "G1", "G2", "G3", "G50"], cancer, panel), 5)
    0.00025
    >>> cancer_enrichment(["G50", "G51"], cancer, panel)
    1.0

    """
    hits = len(set(top_genes) & cancer & panel)
    return float(hypergeom.sf(hits - 1, len(panel), len(cancer & panel), len(top_genes))) if hits else 1.0


def _label_cluster(top, db, fallback, min_votes, min_margin) -> tuple[str, dict, str, float]:
    votes = marker_votes(top, db)
    source = "markers"
    if votes.sum() < min_votes and fallback is not None:
        votes, source = marker_votes(top, fallback), "fallback"
    margin = vote_margin(votes)
    if votes.sum() < min_votes or votes.empty:
        return "Unknown", votes.to_dict(), "insufficient", margin
    if margin < min_margin:
        return "Unknown", votes.to_dict(), "ambiguous", margin
    return str(votes.idxmax()), votes.to_dict(), source, margin


def _check_cancer_power(cancer: set[str], panel: set[str], n_top: int, fdr: float) -> None:
    """Say at run time when the panel cannot show a tumour programme."""
    best = cancer_enrichment(sorted(cancer)[:n_top], cancer, panel) if cancer else 1.0
    if best >= fdr:
        logger.warning(
            "The panel holds %d genes of the cancer gene set: even %d of %d top DEGs in it would not reach the "
            "false discovery rate %.3g, so no cluster can become Neoplastic. Pass cancer= with genes of this panel.",
            len(cancer),
            min(len(cancer), n_top),
            n_top,
            fdr,
        )


def _neoplastic_refinement(per_cluster: dict[str, dict], fdr: float) -> None:
    """Epithelial clusters whose enrichment q-value (Benjamini-Hochberg) is below ``fdr`` -> Neoplastic."""
    epithelial = [name for name, info in per_cluster.items() if info["label"] == "Epithelial"]
    if not epithelial:
        return
    q = false_discovery_control([per_cluster[name]["cancer_p"] for name in epithelial], method="bh")
    for name, value in zip(epithelial, q, strict=True):
        per_cluster[name]["cancer_q"] = float(value)
        if value < fdr:
            per_cluster[name]["label"] = "Neoplastic"


def pseudolabels(
    sdata: SpatialData,
    *,
    table_key: str = TABLE_KEY,
    markers: str | dict | pd.DataFrame | os.PathLike = "breast",
    fallback_markers: str | dict | pd.DataFrame | os.PathLike | None = "canonical",
    species: str = "human",
    layer: str | None = "counts",
    resolution: float = 4.0,
    n_top: int = 10,
    min_votes: float = 5,
    min_margin: float = 0.1,
    cancer: list[str] | dict | os.PathLike | None = None,
    n_cancer_top: int = 20,
    cancer_fdr: float = 0.05,
    min_counts: int = 10,
    seed: int = 0,
    key_added: str = "cell_type",
    cluster_key: str = "leiden",
) -> None:
    """Label cells with coarse cell types from their transcriptome, without annotation.

    Following Hirose/Nishimura: normalise to the median total, log1p, PCA, kNN graph and Leiden
    clusters (scanpy); per cluster, Wilcoxon rank-sum DEGs (one cluster vs the rest); the top
    ``n_top`` DEGs vote through the marker table for coarse classes, the ``l``-th gene with weight
    ``n_top - l``; the cluster takes the class with most votes. Genes of the ``cancer`` set that
    the marker tables do not list skip the voting ranks: a tumour programme says nothing about the
    lineage, and a tumour cluster's DEGs are often led by it. When the vote total is below
    ``min_votes``, the organ-agnostic ``fallback_markers`` vote instead; with still too little
    evidence, the cluster is ``Unknown``; so is a cluster whose winning class leads the runner-up
    by less than ``min_margin`` of all its votes (:func:`vote_margin`: mixed or ambiguous
    evidence is not forced into a class). An Epithelial cluster becomes ``Neoplastic`` when its top
    ``n_cancer_top`` DEGs are enriched for the ``cancer`` gene set beyond what the panel predicts:
    one-sided hypergeometric test against as many genes drawn from the panel
    (:func:`cancer_enrichment`), Benjamini-Hochberg over the Epithelial clusters, q <
    ``cancer_fdr``. The paper's rule (overlap fraction > 0.25) ignores that a cancer panel holds
    many cancer genes and is decided by ties on small panels (0.25 is 5 of 20 genes). Cells with
    fewer than ``min_counts`` transcripts are ``Unknown`` and not clustered.

    Parameters
    ----------
    sdata
        SpatialData with a count table.
    table_key, layer
        The table and its raw-count layer (``None``: ``X``; the default falls back to ``X`` when it
        holds integer counts and there is no such layer, as in sopa's tables).
    markers, fallback_markers, species
        Marker tables (see :func:`jointseg.tl.marker_table`: ``"breast"``, ``"canonical"``, a
        dict, a DataFrame, or a PanglaoDB / CellMarker file); ``fallback_markers=None`` disables
        the fallback.
    resolution
        Leiden resolution (the paper's 4.0: fine clusters, so that a tumour subclone or a
        proliferating nest is not averaged into normal epithelium).
    n_top, min_votes
        DEGs that vote, and the vote total below which the fallback, then Unknown, applies.
    min_margin
        Smallest lead of the winning class over the runner-up, as a fraction of all votes, for a
        cluster to take a class; below it the cluster is ``Unknown`` (vote source ``"ambiguous"``).
    cancer
        The neoplastic gene set (:func:`jointseg.tl.gene_set`: ``None`` for the shipped programmes
        of :func:`jointseg.tl.cancer_gene_sets` in ``species`` symbols, a list, a dict of
        programmes, or a GMT / text file); ``[]`` disables the refinement.
    n_cancer_top, cancer_fdr
        DEGs tested for enrichment, and the false discovery rate below which an Epithelial cluster
        is Neoplastic.
    min_counts
        Cells below this many transcripts stay Unknown.
    seed
        Seed of PCA and Leiden.
    key_added, cluster_key
        Categorical ``obs`` columns written: the class and the Leiden cluster.

    Returns
    -------
    None. Adds categorical ``obs[key_added]`` (categories: the coarse classes that occur, in the
    order of :data:`jointseg.tl.COARSE_CLASSES`) and
    ``obs[cluster_key]``, ``obs[f"{key_added}_margin"]`` (the vote margin of the cell's cluster; NaN
    for cells not clustered), and ``uns["jointseg"]["pseudolabels"]`` with the parameters and, per
    cluster, its label, votes, vote margin, vote source, top DEGs, the genes that voted, the cancer
    genes among the top ``n_cancer_top`` DEGs (``cancer_hits``), the overlap fraction, and the
    enrichment p- and q-values (q is NaN for clusters that are not Epithelial).

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=25)
    >>> jg.tl.aggregate(sdata, labels_key="true_cells", points_key="transcripts")
    >>> jg.tl.pseudolabels(sdata, markers={"T cells": ["T0_0", "T0_1"], "Fibroblasts": ["T1_0", "T1_1"]},
    ...                    fallback_markers=None, min_votes=1, min_counts=1, resolution=1.0)
    >>> sdata["table"].obs["cell_type"].dtype.name
    'category'

    """
    if table_key not in sdata.tables:
        raise KeyError(f"No table {table_key!r} (available: {list(sdata.tables)}); segment or aggregate first.")
    table = sdata[table_key]
    counts = raw_counts(table, layer, table_key=table_key)
    db = marker_table(markers, species=species)
    fallback = marker_table(fallback_markers, species=species) if fallback_markers is not None else None
    panel = set(table.var_names.astype(str))
    cancer_set = gene_set(cancer, species=species) & panel
    _check_cancer_power(cancer_set, panel, n_cancer_top, cancer_fdr)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    keep = totals >= min_counts
    if keep.sum() < 3:
        raise ValueError(f"Only {int(keep.sum())} cells have >= {min_counts} transcripts: too few to cluster.")
    work = ad.AnnData(counts[keep].astype(np.float32), var=pd.DataFrame(index=table.var_names.astype(str)))
    leiden_clusters(work, max_comps=50, resolution=resolution, seed=seed)
    clusters = work.obs["leiden"]
    sizes = clusters.value_counts()
    testable = [str(c) for c in clusters.cat.categories if sizes[c] >= 2]  # Wilcoxon needs two cells
    if len(testable) < len(sizes):
        logger.info("Pseudolabels: %d one-cell clusters have no DEGs and stay Unknown.", len(sizes) - len(testable))
    names = pd.DataFrame()
    if len(testable) > 1 and clusters.nunique() > 1:
        sc.tl.rank_genes_groups(
            work, "leiden", groups=testable, reference="rest", method="wilcoxon", n_genes=n_top + n_cancer_top
        )
        names = pd.DataFrame(work.uns["rank_genes_groups"]["names"])
    lineage_genes = set(db["gene"]) | (set(fallback["gene"]) if fallback is not None else set())
    per_cluster = {}
    for cluster in clusters.cat.categories:
        ranked = [str(g) for g in names[cluster].tolist()] if cluster in names else []
        # a tumour programme (proliferation, hypoxia, an amplicon) says nothing about the lineage: its
        # genes do not take the voting ranks unless the marker table lists them
        voters = [g for g in ranked if g in lineage_genes or g not in cancer_set][:n_top]
        label, votes, source, margin = _label_cluster(voters, db, fallback, min_votes, min_margin)
        top_cancer = ranked[:n_cancer_top]
        hits = [g for g in top_cancer if g in cancer_set]
        per_cluster[str(cluster)] = {
            "label": label, "votes": {k: float(v) for k, v in votes.items()}, "margin": margin, "vote_source": source,
            "top_genes": ranked[:n_top], "voting_genes": voters,
            "cancer_hits": hits, "cancer_overlap": len(hits) / max(len(top_cancer), 1),
            "cancer_p": cancer_enrichment(top_cancer, cancer_set, panel), "cancer_q": float("nan"),
            "n_cells": int((clusters == cluster).sum()),
        }  # fmt: skip
    _neoplastic_refinement(per_cluster, cancer_fdr)
    label_of = {c: per_cluster[str(c)]["label"] for c in clusters.cat.categories}
    labels = np.full(table.n_obs, "Unknown", dtype=object)
    labels[keep] = clusters.map(label_of).astype(str).to_numpy()
    present = [c for c in COARSE_CLASSES if c in set(labels)]  # squidpy: no empty categories
    table.obs[key_added] = pd.Categorical(labels, categories=present)
    margins = np.full(table.n_obs, np.nan)
    margins[keep] = clusters.map({c: per_cluster[str(c)]["margin"] for c in clusters.cat.categories}).to_numpy(float)
    table.obs[f"{key_added}_margin"] = margins
    leiden = np.full(table.n_obs, np.nan, dtype=object)
    leiden[keep] = clusters.astype(str).to_numpy()
    table.obs[cluster_key] = pd.Categorical(leiden, categories=[str(c) for c in clusters.cat.categories])
    table.uns.setdefault(UNS_KEY, {})["pseudolabels"] = {
        "markers": markers if isinstance(markers, str) else type(markers).__name__,
        "resolution": resolution, "n_top": n_top, "min_votes": min_votes, "min_margin": min_margin,
        "n_cancer_top": n_cancer_top, "cancer_fdr": cancer_fdr, "n_cancer_genes_in_panel": len(cancer_set),
        "min_counts": min_counts, "seed": seed,
        "clusters": per_cluster,
    }  # fmt: skip
    logger.info("Pseudolabels: %d clusters -> %s", len(per_cluster), table.obs[key_added].value_counts().to_dict())
