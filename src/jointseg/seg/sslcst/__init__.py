"""SSL-CST (built on SCS): self-supervised transcript-to-cell assignment with a point transformer.

``api`` holds the public functions, ``config`` the options few users change, ``tokens`` the bins
and their neighbourhoods, ``train`` the self-supervised labels and the training loop, ``infer``
the whole-slide inference, ``postprocess`` the flow tracking into cells.
"""

from jointseg.seg.sslcst.api import sslcst, train_sslcst
from jointseg.seg.sslcst.config import SSLCSTConfig

__all__ = ["SSLCSTConfig", "sslcst", "train_sslcst"]
