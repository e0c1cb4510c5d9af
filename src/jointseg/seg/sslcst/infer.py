"""SSL-CST's whole-slide inference: the network's foreground and direction fields on a lattice of
centre bins, block by block, then flow tracking into cells on the stitched fields.
"""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
from scipy import ndimage as ndi

from jointseg._core.fields import locked
from jointseg._core.tiling import BlockGrid, array_from_blocks, bins_to_pixels, segment_blockwise, with_labels
from jointseg._core.transcripts import TranscriptIndex
from jointseg.models import SSLCSTModel
from jointseg.seg.sslcst.postprocess import class_vectors, direction_prior, flow_cells
from jointseg.seg.sslcst.tokens import (
    BinTable,
    NucleusCentres,
    token_geometry,
    token_settings,
    tokens_of,
)

logger = logging.getLogger("jointseg")


#: Centre bins per network call at inference.
_BATCH = 4096


def _network_outputs(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Foreground probability and direction probabilities ``(1 + n_directions, n)`` of centre bins
    ``(yy, xx)``; bins without a transcript in reach get zeros.
    """
    settings = token_settings(model)
    margin = int(np.ceil(model.radius_bins))
    window = (int(yy.min()) - margin, int(yy.max()) + 1 + margin, int(xx.min()) - margin, int(xx.max()) + 1 + margin)
    table = BinTable.read(index, window, bin_size=model.bin_size, gene_lut=lut)
    out = np.zeros((1 + model.network.config.n_directions, len(yy)), np.float32)
    if len(table) == 0:
        return out
    geometry = token_geometry(table, centres, settings)
    # Centre bins with a transcript in reach, in chunks: memory stays O(chunk x tokens) per block.
    todo = np.flatnonzero(geometry[0].query(np.c_[yy, xx], distance_upper_bound=model.radius_bins)[0] < np.inf)
    for chunk in np.array_split(todo, max(-(-len(todo) // _BATCH), 1)):
        if len(chunk):
            tokens = tokens_of(table, geometry, centres, yy[chunk], xx[chunk], settings)
            fg, probs = locked(model.predict, tokens.batch(table))
            out[0, chunk], out[1:, chunk] = fg, probs.T
    return out


def _fields_block(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, core, grid_shape,
    prior_radius: float, stride: int,
) -> np.ndarray:  # fmt: skip
    """Foreground probability and direction vectors ``(3, h, w)`` on a block of bins.

    The network runs on the bins of a global lattice of step ``stride`` (every bin if 1) and its
    outputs are interpolated bilinearly in between; the lattice is global, so blocks agree.
    """
    y0, y1, x0, x1 = core
    shape = (y1 - y0, x1 - x0)
    # lattice bins around the core (the next one beyond each edge, if on the grid)
    ly, lx = (
        np.arange(a // stride * stride, min(-(-b // stride) * stride if stride > 1 else b - 1, n - 1) + 1, stride)
        for a, b, n in ((y0, y1, grid_shape[0]), (x0, x1, grid_shape[1]))
    )
    lyy, lxx = np.meshgrid(ly, lx, indexing="ij")
    lattice = _network_outputs(index, model, lut, centres, lyy.ravel(), lxx.ravel()).reshape(-1, len(ly), len(lx))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    if stride == 1:
        outputs = lattice.reshape(len(lattice), -1)
    else:
        coords = [((yy - ly[0]) / stride).ravel(), ((xx - lx[0]) / stride).ravel()]
        outputs = np.stack([ndi.map_coordinates(c, coords, order=1, mode="nearest") for c in lattice])
    fg, probs = outputs[0], outputs[1:].T
    n_dir = probs.shape[1]
    predicted = np.flatnonzero(probs.max(axis=1) > 0)  # bins without a transcript in reach keep no direction
    yy, xx = yy.ravel()[predicted], xx.ravel()[predicted]
    reach = 1.25 * prior_radius
    near = (centres.y >= y0 - reach) & (centres.y < y1 + reach) & (centres.x >= x0 - reach) & (centres.x < x1 + reach)
    allowed = direction_prior(yy, xx, centres.y[near], centres.x[near], radius=prior_radius, n=n_dir)
    weighted = probs[predicted] * allowed
    vectors = np.zeros((len(probs), 2))
    vectors[predicted] = class_vectors(n_dir)[weighted.argmax(axis=1)]
    return np.concatenate([fg.reshape(1, *shape), vectors.T.reshape(2, *shape)]).astype(np.float32)


def _flow_block(fields: np.ndarray, **kwargs) -> np.ndarray:
    return flow_cells(fields[0], fields[1:3], fields[3].astype(np.int64), **kwargs)


def predict_sslcst_cells(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, nuclei, *,
    block_size: int, halo_bins: int, prior_radius: float, stride: int, flow_kwargs: dict,
):  # fmt: skip
    """Lazy cell labels of a slide: network fields per block of bins, cells traced blockwise on the
    bin grid (seamless stitching, see :func:`jointseg.seg.segment_blockwise`), brought to pixels.
    """
    b = model.bin_size
    h, w = index.shape
    grid = (-(-h // b), -(-w // b))
    bins = max(block_size // b, 1)
    nodes = [dask.delayed(v, pure=True) for v in (index, model, centres)]
    fields = array_from_blocks(
        BlockGrid(grid, bins, 0),
        lambda blk: dask.delayed(_fields_block, pure=True)(
            nodes[0], nodes[1], lut, nodes[2], blk.core, grid, prior_radius, stride
        ),
        dtype=np.float32,
        leading=(3,),
    )
    at_bins = nuclei[b // 2 :: b, b // 2 :: b]
    at_bins = da.pad(at_bins, ((0, grid[0] - at_bins.shape[0]), (0, grid[1] - at_bins.shape[1])))
    labels = segment_blockwise(
        with_labels(fields, at_bins), _flow_block, block_size=bins, halo=halo_bins, **flow_kwargs
    )
    return bins_to_pixels(labels, b, (h, w))
