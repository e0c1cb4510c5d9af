"""Torch networks and trained-model containers."""

from jointseg.models._gene_encoder import BinnedCounts, GeneEncoder, bin_transcripts
from jointseg.models._genesegnet import GeneSegNetModel
from jointseg.models._segjointgene import SegJointGeneModel, SemanticConfig, SemanticUNet
from jointseg.models._sslcst import PointTransformer, SSLCSTModel, TokenBatch, TransformerConfig
from jointseg.models._unet import ResidualUNet, UNetConfig

__all__ = [
    "BinnedCounts",
    "GeneEncoder",
    "GeneSegNetModel",
    "PointTransformer",
    "ResidualUNet",
    "SSLCSTModel",
    "SegJointGeneModel",
    "SemanticConfig",
    "SemanticUNet",
    "TokenBatch",
    "TransformerConfig",
    "UNetConfig",
    "bin_transcripts",
]
