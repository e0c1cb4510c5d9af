"""Torch networks and trained-model containers."""

from jointseg.models._gene_encoder import BinnedCounts, GeneEncoder, bin_transcripts
from jointseg.models._genesegnet import GeneSegNetModel
from jointseg.models._segjointgene import SegJointGeneModel, SemanticConfig, SemanticUNet
from jointseg.models._unet import ResidualUNet, UNetConfig

__all__ = [
    "BinnedCounts",
    "GeneEncoder",
    "GeneSegNetModel",
    "ResidualUNet",
    "SegJointGeneModel",
    "SemanticConfig",
    "SemanticUNet",
    "UNetConfig",
    "bin_transcripts",
]
