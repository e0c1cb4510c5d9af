"""jointseg: cell segmentation from the nuclei stain and the transcripts together, in SpatialData."""

from importlib.metadata import version

from jointseg import datasets, pp, seg, tl

__all__ = ["datasets", "pp", "seg", "tl"]
__version__ = version("jointseg")
