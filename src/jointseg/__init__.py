"""jointseg: cell segmentation from the nuclei stain and the transcripts together, in SpatialData."""

from importlib.metadata import version

from jointseg import datasets, io, metrics, models, pl, pp, seg, tl

__all__ = ["datasets", "io", "metrics", "models", "pl", "pp", "seg", "tl"]
__version__ = version("jointseg")
