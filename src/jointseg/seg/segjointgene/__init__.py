"""SegJointGene (Ma & Wang 2026): cell boundaries and a gene ranking refined jointly, from per-gene
transcript channels, nucleus cores and a cell-type semantic U-Net scored gene by gene with CID.

``api`` holds the public function, ``celltypes`` the nucleus types, ``train`` the joint
refinement, ``cid`` the information-discarding scores, ``postprocess`` the typed growth.
"""

from jointseg.seg.segjointgene.api import segjointgene

__all__ = ["segjointgene"]
