"""jointseg: cell segmentation from the nuclei stain and the transcripts together, in SpatialData."""

from importlib.metadata import version

from jointseg import datasets, pp

__all__ = ["datasets", "pp"]
__version__ = version("jointseg")
