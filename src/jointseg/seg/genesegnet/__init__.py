"""GeneSegNet (Wang et al. 2023): a residual U-Net on the nuclei stain and the RNA location map,
self-trained on the slide from the nuclei prior.

``api`` holds the public functions, ``train`` the self-training rounds, ``postprocess`` the
instances built from the network's fields.
"""

from jointseg.seg.genesegnet.api import genesegnet, train_genesegnet

__all__ = ["genesegnet", "train_genesegnet"]
