"""Tools: transcripts-to-cells aggregation, gene scores, cell-type pseudolabels."""

from jointseg.tl._aggregate import aggregate
from jointseg.tl._gene_scores import gene_scores, spatial_entropy
from jointseg.tl._image_classifier import (
    ImageClassifierModel,
    class_weights,
    predict_image_classes,
    train_image_classifier,
)
from jointseg.tl._markers import (
    COARSE_CLASSES,
    cancer_gene_sets,
    cancer_genes,
    canonical_markers,
    coarse_class,
    gene_set,
    marker_table,
)
from jointseg.tl._pseudolabels import cancer_enrichment, marker_votes, pseudolabels, vote_margin

__all__ = [
    "COARSE_CLASSES",
    "ImageClassifierModel",
    "aggregate",
    "cancer_enrichment",
    "cancer_gene_sets",
    "cancer_genes",
    "canonical_markers",
    "class_weights",
    "coarse_class",
    "gene_scores",
    "gene_set",
    "marker_table",
    "marker_votes",
    "predict_image_classes",
    "pseudolabels",
    "spatial_entropy",
    "train_image_classifier",
    "vote_margin",
]
