"""SSL-CST's whole-slide inference: the network's foreground and direction fields on a lattice of
centre bins, block by block, then flow tracking into cells on the stitched fields.
"""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
from scipy import ndimage as ndi

from jointseg._core.fields import inference_batch, locked
from jointseg._core.tiling import (
    BlockGrid,
    array_from_blocks,
    bins_to_pixels,
    segment_blockwise,
    split_labels,
    with_labels,
)
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


#: Centre bins whose tokens are built at once, and per network call on a CPU (256) or an
#: accelerator (4096). Small CPU batches keep the activations (batch x 49 tokens x 64) small: on 2
#: cores, 256 ran 2.8x faster than 4096, whose large buffers spent half their time in page faults
#: (benchmarks/bench_sslcst.py).
_TOKEN_CHUNK = 4096
_BATCH = 256
_ACCELERATOR_BATCH = 4096


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
    batch = inference_batch(model.device, cpu=_BATCH, accelerator=_ACCELERATOR_BATCH)
    for chunk in np.array_split(todo, max(-(-len(todo) // _TOKEN_CHUNK), 1)):
        tokens = tokens_of(table, geometry, centres, yy[chunk], xx[chunk], settings)
        for start in range(0, len(chunk), batch):
            rows = slice(start, start + batch)
            fg, probs = locked(model.predict, tokens.batch(table, rows))
            out[0, chunk[rows]], out[1:, chunk[rows]] = fg, probs.T
    return out


def _disagree(corners: np.ndarray, *, max_foreground_gap: float = 0.4, max_class_gap: int = 3) -> np.ndarray:
    """Coarse lattice squares whose four corners ``(C, h, w)`` disagree ``(h - 1, w - 1)``: one corner
    has no transcript in reach and another has, their foreground probabilities differ by more than
    ``max_foreground_gap``, or their most likely directions are more than ``max_class_gap`` classes
    apart. The directions are noisy from bin to bin (on the real crop, 45% of 2 um squares hold
    directions two classes apart) and the flows follow their 5-bin smoothing, so only larger
    turns are recomputed.
    """
    fg, probs = corners[0], corners[1:]
    n_dir = len(probs)
    present = probs.max(axis=0) > 0
    best = probs.argmax(axis=0)
    quads = [(slice(None, -1), slice(None, -1)), (slice(None, -1), slice(1, None)),
             (slice(1, None), slice(None, -1)), (slice(1, None), slice(1, None))]  # fmt: skip
    flagged = np.zeros((fg.shape[0] - 1, fg.shape[1] - 1), bool)
    for i, a in enumerate(quads):
        for b in quads[i + 1 :]:
            gap = np.abs(best[a] - best[b])
            flagged |= (present[a] != present[b]) | (np.abs(fg[a] - fg[b]) > max_foreground_gap)
            flagged |= present[a] & present[b] & (np.minimum(gap, n_dir - gap) > max_class_gap)
    return flagged


def _axis_squares(fine: np.ndarray, coarse: np.ndarray, k: int) -> np.ndarray:
    """For each fine lattice index, the (at most two) coarse squares holding it, as indices into a
    square array padded by one on each side (0 and ``len(coarse)``: no square).
    """
    a = fine // k - coarse[0]
    own = np.where(a + 1 < len(coarse), a + 1, 0)
    left = np.where((fine % k == 0) & (a >= 1), a, 0)
    return np.c_[own, left]


def _adaptive_lattice(evaluate, fy: np.ndarray, fx: np.ndarray, last: tuple[int, int], k: int) -> np.ndarray:
    """Network outputs ``(C, len(fy), len(fx))`` on the fine lattice indices ``fy`` x ``fx``:
    computed on every ``k``-th index first, then computed again only in the coarse squares whose
    corners disagree (:func:`_disagree`), bilinear from the corners elsewhere.

    Every decision depends on the global lattice alone, so blocks agree. ``evaluate(iy, ix)`` gives
    the outputs ``(C, n)`` of fine points; ``last`` is the largest fine index along each axis.
    """
    cy, cx = (
        np.arange(max(f[0] // k - 1, 0), min(f[-1] // k + 1, m // k) + 1) for f, m in zip((fy, fx), last, strict=True)
    )
    cyy, cxx = np.meshgrid(cy * k, cx * k, indexing="ij")
    corners = evaluate(cyy.ravel(), cxx.ravel()).reshape(-1, len(cy), len(cx))
    pad = ((1, 1), (1, 1))
    flagged = np.pad(_disagree(corners), pad)
    complete = np.pad(np.ones((len(cy) - 1, len(cx) - 1), bool), pad)
    sy, sx = _axis_squares(fy, cy, k), _axis_squares(fx, cx, k)
    refine = np.zeros((len(fy), len(fx)), bool)
    covered = np.zeros_like(refine)
    for i in range(2):
        for j in range(2):
            refine |= flagged[sy[:, i][:, None], sx[:, j][None, :]]
            covered |= complete[sy[:, i][:, None], sx[:, j][None, :]]
    on_coarse = (fy % k == 0)[:, None] & (fx % k == 0)[None, :]
    refine = (refine | ~covered) & ~on_coarse
    # Bilinear from the coarse corners (exact on them); the refined points are then overwritten.
    ty, tx = (np.clip((f - c[0] * k) / k, 0, len(c) - 1) for f, c in ((fy, cy), (fx, cx)))
    out = np.stack([ndi.map_coordinates(c, np.meshgrid(ty, tx, indexing="ij"), order=1, mode="nearest")
                    for c in corners])  # fmt: skip
    ry, rx = np.nonzero(refine)
    if len(ry):
        out[:, ry, rx] = evaluate(fy[ry], fx[rx])
    return out


def _fields_block(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, core, grid_shape,
    prior_radius: float, stride: int, coarse: int = 1,
) -> np.ndarray:  # fmt: skip
    """Foreground probability and direction vectors ``(3, h, w)`` on a block of bins.

    The network runs on the bins of a global lattice of step ``stride`` (every bin if 1) and its
    outputs are interpolated bilinearly in between; the lattice is global, so blocks agree. With
    ``coarse > 1`` the lattice itself is first computed every ``coarse`` steps and refined only
    where that coarser lattice disagrees with itself (see :func:`_adaptive_lattice`).
    """
    y0, y1, x0, x1 = core
    shape = (y1 - y0, x1 - x0)
    # lattice bins around the core (the next one beyond each edge, if on the grid)
    ly, lx = (
        np.arange(a // stride * stride, min(-(-b // stride) * stride if stride > 1 else b - 1, n - 1) + 1, stride)
        for a, b, n in ((y0, y1, grid_shape[0]), (x0, x1, grid_shape[1]))
    )

    def evaluate(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        return _network_outputs(index, model, lut, centres, iy * stride, ix * stride)

    if coarse > 1:
        last = ((grid_shape[0] - 1) // stride, (grid_shape[1] - 1) // stride)
        lattice = _adaptive_lattice(evaluate, ly // stride, lx // stride, last, coarse)
    else:
        lyy, lxx = np.meshgrid(ly, lx, indexing="ij")
        lattice = evaluate(lyy.ravel() // stride, lxx.ravel() // stride).reshape(-1, len(ly), len(lx))
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
    fields, seeds = split_labels(fields)
    return flow_cells(fields[0], fields[1:3], seeds, **kwargs)


def predict_sslcst_cells(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, nuclei, *,
    block_size: int, halo_bins: int, prior_radius: float, stride: int, coarse: int = 1, flow_kwargs: dict,
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
            nodes[0], nodes[1], lut, nodes[2], blk.core, grid, prior_radius, stride, coarse
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
