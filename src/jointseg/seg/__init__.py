"""Segmentation methods: the expansion baseline and one package per published method.

The shared engine (tiling, stitching, fields, shapes, outputs) lives in :mod:`jointseg._core`;
its public pieces are re-exported here.
"""

from jointseg._core.expansion import grow_nuclei
from jointseg._core.fields import sliding_window_average
from jointseg._core.shapes import labels_to_shapes
from jointseg._core.tiling import BlockGrid, segment_blockwise
from jointseg.seg.expand import expand_nuclei
from jointseg.seg.genesegnet import GeneSegNetConfig, genesegnet, train_genesegnet
from jointseg.seg.refine import refine
from jointseg.seg.segjointgene import SegJointGeneConfig, segjointgene, train_segjointgene
from jointseg.seg.sslcst import SSLCSTConfig, sslcst, train_sslcst

__all__ = [
    "BlockGrid",
    "GeneSegNetConfig",
    "SSLCSTConfig",
    "SegJointGeneConfig",
    "expand_nuclei",
    "genesegnet",
    "grow_nuclei",
    "labels_to_shapes",
    "refine",
    "segjointgene",
    "segment_blockwise",
    "sliding_window_average",
    "sslcst",
    "train_genesegnet",
    "train_segjointgene",
    "train_sslcst",
]
