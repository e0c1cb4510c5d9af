"""GeneSegNet's inputs on any window of a slide, and its whole-slide inference: fields averaged over
overlapping windows block by block, then instances built on the stitched fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from jointseg._core.density import location_map
from jointseg._core.fields import inference_batch, input_region, locked, predict_fields_on_region
from jointseg._core.tiling import BlockGrid, array_from_blocks, segment_blockwise, split_labels, with_labels
from jointseg._core.transcripts import TranscriptIndex
from jointseg._core.utils import sampled_percentiles
from jointseg.models import GeneSegNetModel
from jointseg.seg.genesegnet.postprocess import instances_from_offsets

SPILL_CHUNK = 512  # px: the chunks of fields put on disk


@dataclass(frozen=True)
class SlideInputs:
    """Reads GeneSegNet's two input channels on any window of a slide: the stain scaled so its
    global 1st/99th percentiles go to 0/1 (clipped), and the RNA location map, which is already in
    [0, 1] and is used as it is.
    """

    index: TranscriptIndex
    lo: float
    hi: float
    sigma_px: float

    def read(self, stain: np.ndarray, origin: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
        """Inputs ``(2, h, w)`` on ``region``, from ``stain`` whose pixel (0, 0) is ``origin``."""
        y0, y1, x0, x1 = region
        oy, ox = origin
        crop = np.asarray(stain[y0 - oy : y1 - oy, x0 - ox : x1 - ox], dtype=np.float32)
        scaled = np.clip((crop - self.lo) / (self.hi - self.lo), 0, 1)
        return np.stack([scaled, location_map(self.index, region, sigma=self.sigma_px)])


def slide_inputs(stain, index: TranscriptIndex, sigma_px: float) -> SlideInputs:
    """The :class:`SlideInputs` of a stain (dask array; its percentiles from a subsample) and transcripts."""
    lo, hi = sampled_percentiles(stain, [1, 99])
    return SlideInputs(index, float(lo), float(max(hi, lo + 1e-6)), sigma_px)


def instance_params(px: float, min_cell_area_um2: float) -> dict:
    """Instance-building settings in pixels for a pixel size ``px`` (microns)."""
    return {
        "min_area": int(round(min_cell_area_um2 / px**2)),
        "min_distance": max(int(round(2.5 / px)), 1),
        "vote_sigma": 0.5 / px,
        "max_vote_distance": 3.0 / px,
    }


def _fields_task(stain, origin, inputs: SlideInputs, core, shape, model: GeneSegNetModel, window: int, stride: int,
                 factor: float):  # fmt: skip
    fields = predict_fields_on_region(
        core,
        shape,
        lambda region: inputs.read(stain, origin, region),
        lambda batch: locked(model.predict, batch),
        window=window,
        stride=stride,
        batch_size=inference_batch(model.device),
        factor=factor,
    )
    fields[1:] *= factor  # offsets: the network's pixels -> the slide's
    return fields


def predict_cells(
    stain,
    inputs: SlideInputs,
    model: GeneSegNetModel,
    *,
    block_size: int,
    halo: int,
    window: int,
    stride: int,
    instance_kwargs: dict,
    nuclei=None,
    spill: Callable[[da.Array], da.Array | None] | None = None,
    factor: float = 1.0,
    keep_foreground: bool = False,
) -> tuple[da.Array, da.Array]:
    """Lazy cell labels of a whole slide: fields per block on the global window grid (of the
    network's grid, ``factor`` times coarser than the slide's; ``window`` and ``stride`` in its
    pixels), then instances built blockwise on the stitched fields (see
    :func:`jointseg.seg.segment_blockwise`), with the ``nuclei`` (lazy labels) as cell centres if
    given, else the peaks of the offset votes.

    ``spill`` (e.g. :meth:`jointseg._core.method_run.MethodRun.spill`) may put the fields on disk:
    the instance blocks then read their windows from there, and no rows of fields wait in memory
    for the neighbouring blocks (they grow with the slide's width: 0.49 GB at 8192 px).

    Returns the labels and the network's foreground probability (lazy; read from the spilled
    fields). With ``keep_foreground``, fields that cannot be spilled are persisted in memory, so
    that reading the probability does not run the network again.
    """
    shape = tuple(int(s) for s in stain.shape)
    index_node = dask.delayed(inputs, pure=True)  # one graph node, not a copy per task
    model_node = dask.delayed(model, pure=True)

    def block_fields(blk):
        iy0, iy1, ix0, ix1 = input_region(blk.core, shape, window=window, stride=stride, factor=factor)
        return dask.delayed(_fields_task, pure=True)(
            stain[iy0:iy1, ix0:ix1], (iy0, ix0), index_node, blk.core, shape, model_node, window, stride, factor
        )

    fields = array_from_blocks(BlockGrid(shape, block_size, 0), block_fields, dtype=np.float32, leading=(3,))
    # Small chunks on disk: a block's window (its core and halo) reads little beyond itself.
    on_disk = None if spill is None else spill(fields.rechunk((3, SPILL_CHUNK, SPILL_CHUNK)))
    if on_disk is not None:
        fields = on_disk
    elif keep_foreground:
        fields = fields.persist()
    probability = fields[0]
    if nuclei is not None:
        fields = with_labels(fields, nuclei)
    # Instances on blocks of half the network's edge: on 2048 px blocks with their halos they held
    # the process's peak (benchmarks/bench_memory.py at 4096 px: 3.47 GB, 2.11 GB on 1024 px blocks).
    labels = segment_blockwise(
        fields, _instances_block, block_size=max(block_size // 2, 1), halo=halo, read_windows=on_disk is not None,
        **instance_kwargs,
    )  # fmt: skip
    return labels, probability


def _instances_block(fields: np.ndarray, **kwargs) -> np.ndarray:
    seeds = None
    if len(fields) > 3:
        fields, seeds = split_labels(fields)
    return instances_from_offsets(fields[0], fields[1:3], seeds=seeds, **kwargs)
