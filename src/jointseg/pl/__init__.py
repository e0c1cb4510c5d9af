"""Plots."""

from jointseg.pl._cell_types import cell_types, marker_dotplot
from jointseg.pl._gene_scores import gene_scores
from jointseg.pl._qc import qc
from jointseg.pl._segmentation import segmentation
from jointseg.pl._votes import cluster_votes

__all__ = ["cell_types", "cluster_votes", "gene_scores", "marker_dotplot", "qc", "segmentation"]
