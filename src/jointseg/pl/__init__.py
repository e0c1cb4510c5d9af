"""Plots."""

from jointseg.pl._gene_scores import gene_scores
from jointseg.pl._segmentation import segmentation

__all__ = ["gene_scores", "segmentation"]
