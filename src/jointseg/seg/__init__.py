"""Segmentation methods and the shared tiling/stitching engine."""
