"""Marker resources for pseudolabels: shipped tables, user tables in common layouts, coarse classes."""

from __future__ import annotations

import os
import re
from importlib.resources import files
from pathlib import Path

import pandas as pd

from jointseg.datasets import markers as tissue_markers

#: Coarse classes of the pseudolabels (Hirose/Nishimura), plus Endothelial; Neoplastic comes only
#: from the cancer refinement of Epithelial clusters.
COARSE_CLASSES = ("Epithelial", "Neoplastic", "Inflammatory", "Connective", "Endothelial", "Unknown")

#: The breast tables' cell types (BIDCell) in coarse classes. Malignant cells vote Epithelial: the
#: neoplastic refinement decides which epithelial clusters are tumour.
BREAST_COARSE = {
    "Epithelial": "Epithelial",
    "Malignant": "Epithelial",
    "B": "Inflammatory",
    "CD4Tconv/Treg": "Inflammatory",
    "CD8T/CD8Tex": "Inflammatory",
    "DC": "Inflammatory",
    "Mast": "Inflammatory",
    "Mono/Macro": "Inflammatory",
    "NK": "Inflammatory",
    "Neutrophils": "Inflammatory",
    "Plasma": "Inflammatory",
    "Fibroblasts": "Connective",
    "Myofibroblasts": "Connective",
    "SMC": "Connective",
    "Endothelial": "Endothelial",
}

_KEYWORDS = (
    (r"endothel", "Endothelial"),
    (r"epithel|luminal|basal|keratinocyte|malignant|tumou?r|cancer|carcinoma|ductal|alveolar|hepatocyte", "Epithelial"),
    (r"fibro|strom|smooth|smc|pericyte|adipo|mesenchym|muscle", "Connective"),
    (
        r"\bt\b|t cell|b cell|\bnk\b|natural killer|macrophage|monocyte|dendritic|mast|neutrophil|plasma|immune|"
        r"lymphocyte|myeloid|granulocyte|treg|cd4|cd8|eosinophil|basophil|microglia",
        "Inflammatory",
    ),
)


def coarse_class(cell_type: str) -> str:
    """Coarse class of a cell-type name by keyword (``"Unknown"`` when none matches).

    Examples
    --------
    >>> [coarse_class(t) for t in ["Luminal epithelial cells", "CD8 T cells", "Pericytes", "Neurons"]]
    ['Epithelial', 'Inflammatory', 'Connective', 'Unknown']

    """
    name = cell_type.lower()
    for pattern, klass in _KEYWORDS:
        if re.search(pattern, name):
            return klass
    return "Unknown"


def canonical_markers(species: str = "human") -> pd.DataFrame:
    """The shipped organ-agnostic table of canonical lineage markers (columns ``cell_type``,
    ``coarse_class``, ``gene``, ``source``), in ``species`` ("human" or "mouse") gene symbols.
    """
    if species not in ("human", "mouse"):
        raise ValueError(f"species must be 'human' or 'mouse', got {species!r}.")
    with (files("jointseg.datasets") / "data" / "canonical_markers.csv.gz").open("rb") as fh:
        table = pd.read_csv(fh, compression="gzip", keep_default_na=False)
    table = table[table[species] != ""].rename(columns={species: "gene"})
    return table[["cell_type", "coarse_class", "gene", "source"]].reset_index(drop=True)


def cancer_gene_sets(species: str = "human") -> pd.DataFrame:
    """The shipped neoplastic gene sets (columns ``program``, ``tissue``, ``gene``, ``source``).

    Cancer-cell programmes written for jointseg from the literature, one source per row (full
    references in ``jointseg/datasets/data/ATTRIBUTION.md``): proliferation (Tirosh 2016 S and G2/M
    genes), hypoxia (Buffa 2010 metagene, HIF targets), invasion/EMT (EMT transcription factors,
    Puram 2017 partial EMT), oncogenes activated by amplification or overexpression (COSMIC Cancer
    Gene Census), cancer/testis antigens, and tissue-specific tumour markers (``tissue`` names the
    organs: breast amplicons 17q12, 11q13 and 8p11, lipogenesis, prostate, liver, colorectal/lung).
    Lineage genes that normal epithelium expresses as much as tumour (ESR1, GATA3, FOXA1, KRT8...)
    are left out on purpose: the sets must separate tumour from normal epithelium.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"`` symbols; genes without a one-to-one mouse orthologue are dropped
        for mouse.

    Examples
    --------
    >>> sets = cancer_gene_sets()
    >>> sorted(sets["program"].unique())[:3]
    ['amplicon_11q13', 'amplicon_17q12', 'amplicon_8p11']
    >>> "Mki67" in set(cancer_gene_sets("mouse")["gene"])
    True

    """
    if species not in ("human", "mouse"):
        raise ValueError(f"species must be 'human' or 'mouse', got {species!r}.")
    with (files("jointseg.datasets") / "data" / "neoplastic_gene_sets.csv").open("rb") as fh:
        table = pd.read_csv(fh, keep_default_na=False)
    table = table[table[species] != ""].rename(columns={species: "gene"})
    return table[["program", "tissue", "gene", "source"]].reset_index(drop=True)


def cancer_genes(*, species: str = "human", programs: list[str] | None = None) -> list[str]:
    """Genes of the shipped neoplastic gene sets (:func:`cancer_gene_sets`), sorted.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    programs
        Keep only these programmes (``None``: all of them).

    Examples
    --------
    >>> "MKI67" in cancer_genes(programs=["proliferation"])
    True

    """
    table = cancer_gene_sets(species)
    if programs is not None:
        unknown = set(programs) - set(table["program"])
        if unknown:
            raise ValueError(f"Unknown programmes {sorted(unknown)}; shipped: {sorted(table['program'].unique())}.")
        table = table[table["program"].isin(programs)]
    return sorted(set(table["gene"]))


def gene_set(genes: str | os.PathLike | dict | list | set | None, *, species: str = "human") -> set[str]:
    """A gene set from what a user passes: ``None`` (the shipped :func:`cancer_genes`), a list or
    set of symbols, a dict ``{programme: [genes]}`` (their union), or the path of a GMT file
    (MSigDB: name, description, genes, tab-separated) or a text file with one gene per line (``#``
    starts a comment).

    Examples
    --------
    >>> sorted(gene_set({"proliferation": ["MKI67", "TOP2A"], "hypoxia": ["CA9"]}))
    ['CA9', 'MKI67', 'TOP2A']

    """
    if genes is None:
        return set(cancer_genes(species=species))
    if isinstance(genes, dict):
        return {str(g) for members in genes.values() for g in members}
    if isinstance(genes, str | os.PathLike):
        path = Path(genes)
        if not path.exists():
            raise FileNotFoundError(f"No gene-set file {os.fspath(path)!r}; pass a list, a dict, or a GMT/text file.")
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        if path.suffix.lower() == ".gmt":
            return {g.strip() for line in lines for g in line.split("\t")[2:] if g.strip()}
        return {line.strip() for line in lines}
    return {str(g) for g in genes}


def _read_marker_file(path: Path, species: str) -> pd.DataFrame:
    """PanglaoDB TSV or CellMarker (xlsx/csv) layout -> ``cell_type``, ``gene``."""
    name = path.name.lower()
    if name.endswith((".xlsx", ".xls")):
        raw = pd.read_excel(path)
    else:
        raw = pd.read_csv(path, sep="\t" if ".tsv" in name else ",")
    cols = {c.lower(): c for c in raw.columns}
    if "official gene symbol" in cols and "cell type" in cols:  # PanglaoDB
        table = raw
        if "species" in cols:
            code = "Hs" if species == "human" else "Mm"
            table = table[table[cols["species"]].astype(str).str.contains(code)]
        if "ubiquitousness index" in cols:  # the usual filter: drop ubiquitous genes
            table = table[table[cols["ubiquitousness index"]] < 0.05]
        genes = table[cols["official gene symbol"]].astype(str)
        if species == "mouse":
            genes = genes.str[:1] + genes.str[1:].str.lower()
        return pd.DataFrame({"cell_type": table[cols["cell type"]].astype(str).to_numpy(), "gene": genes.to_numpy()})
    if "cell_name" in cols and ("symbol" in cols or "marker" in cols):  # CellMarker 2.0
        table = raw
        if "species" in cols:
            table = table[table[cols["species"]].astype(str).str.lower() == species]
        gene_col = cols.get("symbol", cols.get("marker"))
        cell_types = table[cols["cell_name"]].astype(str).to_numpy()
        return pd.DataFrame({"cell_type": cell_types, "gene": table[gene_col].astype(str).to_numpy()})
    raise ValueError(
        f"{os.fspath(path)!r} is neither a PanglaoDB TSV ('official gene symbol', 'cell type') nor a CellMarker table "
        f"('cell_name', 'Symbol'); columns: {list(raw.columns)}."
    )


def marker_table(markers: str | dict | pd.DataFrame | os.PathLike, *, species: str = "human") -> pd.DataFrame:
    """Markers as a table with ``cell_type``, ``gene`` and ``coarse_class``.

    Parameters
    ----------
    markers
        ``"breast"`` (the demo data's breast tables, positive markers), ``"canonical"`` (the
        shipped lineage markers), a dict ``{cell_type: [genes]}``, a DataFrame with ``cell_type``
        and ``gene`` columns (and optionally ``coarse_class``), or the path of a PanglaoDB TSV or a
        CellMarker xlsx/csv file. Cell types without a ``coarse_class`` are classed by keyword
        (:func:`coarse_class`).
    species
        Gene-symbol convention of the canonical table and of database files.

    Examples
    --------
    >>> marker_table({"T cells": ["CD3E", "CD2"], "Fibroblasts": ["LUM"]})["coarse_class"].tolist()
    ['Inflammatory', 'Inflammatory', 'Connective']

    """
    if isinstance(markers, str) and markers == "canonical":
        return canonical_markers(species)[["cell_type", "gene", "coarse_class"]]
    if isinstance(markers, str) and not Path(markers).exists():
        table = tissue_markers(markers)  # raises with the shipped names if unknown
        table = table[table["kind"] == "positive"][["cell_type", "gene"]].astype(str)
        mapping = BREAST_COARSE if markers == "breast" else {}
        table["coarse_class"] = [mapping.get(t, coarse_class(t)) for t in table["cell_type"]]
        return table.reset_index(drop=True)
    if isinstance(markers, dict):
        table = pd.DataFrame([(t, g) for t, genes in markers.items() for g in genes], columns=["cell_type", "gene"])
    elif isinstance(markers, pd.DataFrame):
        missing = {"cell_type", "gene"} - set(markers.columns)
        if missing:
            raise ValueError(f"A marker DataFrame needs columns 'cell_type' and 'gene'; missing {sorted(missing)}.")
        table = markers.copy()
    else:
        table = _read_marker_file(Path(markers), species)
    if "coarse_class" not in table:
        table["coarse_class"] = [coarse_class(str(t)) for t in table["cell_type"]]
    bad = set(table["coarse_class"]) - set(COARSE_CLASSES)
    if bad:
        raise ValueError(f"Unknown coarse classes {sorted(bad)}; use {COARSE_CLASSES}.")
    return table[["cell_type", "gene", "coarse_class"]].astype(str).reset_index(drop=True)
