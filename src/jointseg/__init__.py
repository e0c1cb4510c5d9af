"""jointseg: cell segmentation from the nuclei stain and the transcripts together, in SpatialData."""

from importlib.metadata import version

from jointseg import datasets

__all__ = ["datasets"]
__version__ = version("jointseg")
