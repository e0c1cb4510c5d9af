"""Plots."""

from jointseg.pl._cell_types import cell_types, marker_dotplot
from jointseg.pl._gene_scores import gene_scores
from jointseg.pl._qc import qc
from jointseg.pl._segmentation import segmentation

__all__ = ["cell_types", "gene_scores", "marker_dotplot", "qc", "segmentation"]
