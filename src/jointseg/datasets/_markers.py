"""Breast cell-type marker tables from the demo data (BIDCell, MIT licence)."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

_TISSUES = {"breast": ("breast_markers_pos.csv.gz", "breast_markers_neg.csv.gz")}


def markers(tissue: str = "breast") -> pd.DataFrame:
    """Positive and negative marker genes per cell type, as a tidy table.

    The breast tables come with the demo data (BIDCell's ``sc_breast_markers_pos/neg.csv``, derived
    from single-cell breast references; 15 cell types over the 313-gene Xenium panel).

    Parameters
    ----------
    tissue
        Name of a shipped marker set. Only ``"breast"`` so far.

    Returns
    -------
    Table with columns ``cell_type``, ``gene`` and ``kind`` (``"positive"`` or ``"negative"``).

    Examples
    --------
    >>> import jointseg as jg
    >>> m = jg.datasets.markers("breast")
    >>> sorted(m["kind"].unique())
    ['negative', 'positive']

    """
    if tissue not in _TISSUES:
        raise KeyError(f"No shipped marker set {tissue!r}; available: {sorted(_TISSUES)}.")
    data = files("jointseg.datasets") / "data"
    frames = []
    for kind, name in zip(("positive", "negative"), _TISSUES[tissue], strict=True):
        with (data / name).open("rb") as fh:
            wide = pd.read_csv(fh, index_col=0, compression="gzip")
        long = wide.stack()
        long = long[long > 0].reset_index()
        long.columns = ["cell_type", "gene", "flag"]
        frames.append(long.assign(kind=kind).drop(columns="flag"))
    out = pd.concat(frames, ignore_index=True)
    out["cell_type"] = out["cell_type"].astype("category")
    out["kind"] = out["kind"].astype("category")
    return out
