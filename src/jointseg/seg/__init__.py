"""Segmentation methods and the shared tiling/stitching engine."""

from jointseg.seg._expand import expand_nuclei, grow_nuclei
from jointseg.seg._fields import sliding_window_average
from jointseg.seg._genesegnet import genesegnet, train_genesegnet
from jointseg.seg._segjointgene import segjointgene
from jointseg.seg._shapes import labels_to_shapes
from jointseg.seg._sslcst import sslcst
from jointseg.seg._tiling import BlockGrid, segment_blockwise

__all__ = [
    "BlockGrid",
    "expand_nuclei",
    "genesegnet",
    "grow_nuclei",
    "labels_to_shapes",
    "segjointgene",
    "segment_blockwise",
    "sliding_window_average",
    "sslcst",
    "train_genesegnet",
]
