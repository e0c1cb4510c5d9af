"""Tools: transcripts-to-cells aggregation and gene scores."""

from jointseg.tl._aggregate import aggregate
from jointseg.tl._gene_scores import gene_scores, spatial_entropy

__all__ = ["aggregate", "gene_scores", "spatial_entropy"]
