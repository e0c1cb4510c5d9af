"""Preprocessing: the nuclei prior and RNA density maps."""

from jointseg._core.units import microns_per_unit, set_units
from jointseg.pp._nuclei import nuclei, segment_nuclei
from jointseg.pp._rna_density import rna_density

__all__ = ["microns_per_unit", "nuclei", "rna_density", "segment_nuclei", "set_units"]
