"""Plots."""

from jointseg.pl._segmentation import segmentation

__all__ = ["segmentation"]
