"""SegJointGene (Ma & Wang 2026): cell boundaries and a gene ranking refined jointly, from per-gene
transcript channels, nucleus cores and a cell-type semantic U-Net scored gene by gene with CID.

``api`` holds the public functions, ``config`` the options few users change, ``celltypes`` the
nucleus types, ``train`` the joint refinement, ``cid`` the information-discarding scores,
``infer`` the whole-slide inference, ``postprocess`` the typed growth.
"""

from jointseg.seg.segjointgene.api import segjointgene, train_segjointgene
from jointseg.seg.segjointgene.config import SegJointGeneConfig

__all__ = ["SegJointGeneConfig", "segjointgene", "train_segjointgene"]
