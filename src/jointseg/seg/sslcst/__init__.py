"""SSL-CST (built on SCS): self-supervised transcript-to-cell assignment with a point transformer.

``api`` holds the public function, ``tokens`` the bins and their neighbourhoods, ``train`` the
self-supervised labels and the training loop, ``postprocess`` the flow tracking into cells.
"""

from jointseg.seg.sslcst.api import sslcst

__all__ = ["sslcst"]
