"""SegJointGene's whole-slide inference: per bin, the type a cell may grow into (the network's class
where it is confident and the CID support is high), computed for the slide first, then typed growth
from the nuclei block by block.
"""

from __future__ import annotations

import logging

import dask
import numpy as np
import torch

from jointseg._core.fields import inference_batch, locked, predict_fields_on_region
from jointseg._core.tiling import Block, BlockGrid, array_from_blocks
from jointseg._core.transcripts import TranscriptIndex
from jointseg.models import SegJointGeneModel, bin_transcripts
from jointseg.seg.segjointgene.postprocess import grow_by_type
from jointseg.seg.segjointgene.train import (
    allowed_types,
    candidates,
    cid_weights,
)

logger = logging.getLogger("jointseg")


def _region_inputs(index, model: SegJointGeneModel, lut, region) -> tuple[np.ndarray, np.ndarray]:
    """Embedding ``(C, h, w)`` and the binned counts' CID support ``(types, h, w)`` on a region of
    bins, exact at its edges (transcripts within the blur's reach outside it are included).
    """
    r = model.network.encoder.reach
    y0, y1, x0, x1 = region
    counts = bin_transcripts(index, (y0 - r, y1 + r, x0 - r, x1 + r), bin_size=model.bin_size, gene_lut=lut)
    encoder = model.network.encoder
    with torch.inference_mode():
        weights = torch.from_numpy(cid_weights(model.cid)).to(model.device)
        embedding = locked(encoder, [counts])[0, :, r:-r, r:-r].cpu().numpy()
        support = encoder.blur(encoder.scatter([counts], weights))[0, :, r:-r, r:-r].cpu().numpy()
    return embedding, support


def _trunk_probabilities(model: SegJointGeneModel, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = model.network.trunk(torch.from_numpy(np.ascontiguousarray(batch)).to(model.device))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def _allowed_block(index, model: SegJointGeneModel, lut, core, grid_shape, window, stride, confidence, dtype):
    """Per bin of a block's core: the type a cell may grow into (0: none; -1: foreground that
    failed the type rule).
    """
    margin = 4  # the confidence smoothing's reach (Gaussian sigma 1 bin, truncated at 4)
    y0, y1, x0, x1 = core
    h, w = grid_shape
    region = (max(y0 - margin, 0), min(y1 + margin, h), max(x0 - margin, 0), min(x1 + margin, w))
    probs = predict_fields_on_region(
        region,
        grid_shape,
        lambda r: _region_inputs(index, model, lut, r)[0],
        lambda batch: locked(_trunk_probabilities, model, batch),
        window=window,
        stride=stride,
        batch_size=inference_batch(model.device),
    )
    _, support = _region_inputs(index, model, lut, region)
    allowed = allowed_types(*candidates(probs, confidence), support, model.support_threshold)
    return allowed[y0 - region[0] : y1 - region[0], x0 - region[2] : x1 - region[2]].astype(dtype)


def _grow_block(
    allowed_bins: np.ndarray, bin_size: int, nuclei: np.ndarray, block: Block, *, type_of, max_distance,
    max_hole_area, fill,
) -> np.ndarray:  # fmt: skip
    """Cells of a block's core (nucleus ids), grown on its extended window; ``allowed_bins`` are the
    bins that cover the window, from the one holding its top-left pixel.
    """
    ey0, ey1, ex0, ex1 = block.ext
    oy, ox = ey0 % bin_size, ex0 % bin_size
    allowed = allowed_bins.repeat(bin_size, 0).repeat(bin_size, 1)[oy : oy + ey1 - ey0, ox : ox + ex1 - ex0]
    cells = grow_by_type(
        nuclei.astype(np.int32), allowed, type_of, max_distance=max_distance, max_hole_area=max_hole_area, fill=fill
    )
    y0, y1, x0, x1 = block.core
    return cells[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]


def predict_segjointgene_cells(
    index: TranscriptIndex, model: SegJointGeneModel, lut: np.ndarray, nuclei, type_of: np.ndarray, *,
    block_size: int,
    halo: int, window: int, stride: int, confidence: float, max_distance: float, max_hole_area: int, fill: bool,
):  # fmt: skip
    """Cell labels of a slide (nucleus ids). Where cells may grow is computed here, per bin and
    block (network and CID support on the coarse grid: a few bytes per bin); the returned lazy
    labels grow every block's nuclei on its extended window.

    Every cell grows from one nucleus, so the nucleus ids label the cells across blocks and each
    block keeps its core: with a halo wider than a cell, the growth inside the core sees every
    nucleus that can reach it. Nothing pixel-sized waits in memory for other blocks: each block
    reads its own window of the nuclei.
    """
    b = model.bin_size
    h, w = index.shape
    grid_shape = (-(-h // b), -(-w // b))
    index_node, model_node = dask.delayed(index, pure=True), dask.delayed(model, pure=True)
    # the smallest signed dtype that holds the types and -1
    dtype = np.result_type(np.min_scalar_type(-1), np.min_scalar_type(len(model.types)))
    allowed = array_from_blocks(
        BlockGrid(grid_shape, max(block_size // b, 1), 0),
        lambda blk: dask.delayed(_allowed_block, pure=True)(
            index_node, model_node, lut, blk.core, grid_shape, window, stride, confidence, dtype
        ),
        dtype=dtype,
    ).compute()
    kwargs = {"type_of": type_of, "max_distance": max_distance, "max_hole_area": max_hole_area, "fill": fill}

    def grow(blk: Block):
        ey0, ey1, ex0, ex1 = blk.ext
        bins = allowed[ey0 // b : -(-ey1 // b), ex0 // b : -(-ex1 // b)]
        return dask.delayed(_grow_block, pure=True)(bins, b, nuclei[blk.ext_slices], blk, **kwargs)

    # The growth takes ~54 bytes per pixel of a window (per-type distance transforms, watershed;
    # measured with tracemalloc): blocks of half the edge keep a window to ~0.1 GB instead of 0.3.
    return array_from_blocks(BlockGrid((h, w), max(block_size // 2, 1), halo), grow, dtype=np.int32)
