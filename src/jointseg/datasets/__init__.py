"""Datasets: the real Xenium breast crop, its marker tables, and synthetic data with ground truth."""

from jointseg.datasets._markers import markers
from jointseg.datasets._synthetic import synthetic
from jointseg.datasets._xenium import xenium_breast

__all__ = ["markers", "synthetic", "xenium_breast"]
