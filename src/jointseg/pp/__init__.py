"""Preprocessing: the nuclei prior and RNA density maps."""

from jointseg.pp._nuclei import nuclei, segment_nuclei
from jointseg.pp._rna_density import rna_density

__all__ = ["nuclei", "rna_density", "segment_nuclei"]
