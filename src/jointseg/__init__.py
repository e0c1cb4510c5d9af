"""jointseg: cell segmentation from the nuclei stain and the transcripts together, in SpatialData."""

from importlib.metadata import version

from jointseg import datasets, io, metrics, models, pl, pp, seg, tl
from jointseg._core.settings import settings

__all__ = ["datasets", "io", "metrics", "models", "pl", "pp", "seg", "settings", "tl"]
__version__ = version("jointseg")
