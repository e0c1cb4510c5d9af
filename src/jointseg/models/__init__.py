"""Torch networks and trained-model containers."""

from jointseg.models._genesegnet import GeneSegNetModel
from jointseg.models._unet import ResidualUNet, UNetConfig

__all__ = ["GeneSegNetModel", "ResidualUNet", "UNetConfig"]
