"""GeneSegNet (Wang et al. 2023): a residual U-Net on the nuclei stain and the RNA location map,
self-trained on the slide from the nuclei prior.

``api`` holds the public functions, ``config`` the options few users change, ``train`` the
self-training rounds, ``infer`` the whole-slide inference, ``postprocess`` the instances built
from the network's fields.
"""

from jointseg.seg.genesegnet.api import genesegnet, train_genesegnet
from jointseg.seg.genesegnet.config import GeneSegNetConfig

__all__ = ["GeneSegNetConfig", "genesegnet", "train_genesegnet"]
