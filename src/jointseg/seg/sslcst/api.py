"""SSL-CST (built on SCS): transcripts binned on a coarse grid, a point transformer trained without
annotation to say, for each bin, whether it is in a cell and in which direction its cell's centre
lies, and cells traced by following those directions to their sinks.
"""

from __future__ import annotations

import logging
import os
import time

import dask
import dask.array as da
import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.fields import locked
from jointseg._core.genes import gene_lookup, sample_bins, select_genes
from jointseg._core.outputs import check_outputs_free, write_segmentation
from jointseg._core.tiling import BlockGrid, array_from_blocks, bins_to_pixels, segment_blockwise
from jointseg._core.training import tiles_with_nuclei
from jointseg._core.transcripts import TranscriptIndex, build_transcript_index
from jointseg._core.utils import image_2d, labels_2d, pixel_size_um, resolve_key, sampled_percentiles, select_device
from jointseg.models import SSLCSTModel, TransformerConfig
from jointseg.seg.sslcst.postprocess import class_vectors, direction_prior, flow_cells
from jointseg.seg.sslcst.tokens import (
    BinTable,
    Neighbourhoods,
    NucleusCentres,
    bin_tree,
    neighbourhoods,
    nucleus_centres,
)
from jointseg.seg.sslcst.train import (
    Samples,
    SSLCSTParams,
    TrainingSet,
    balance,
    erode_labels,
    select_samples,
    train_transformer,
)

logger = logging.getLogger("jointseg")

#: Centre bins per network call at inference.
_BATCH = 4096


def _bin_means(stain: np.ndarray, bin_size: int, shape: tuple[int, int]) -> np.ndarray:
    """Mean of each bin of a crop whose first pixel starts a bin (bins past the crop: +inf)."""
    h, w = stain.shape
    out = np.full(shape, np.inf, np.float32)
    hh, ww = min(h // bin_size, shape[0]), min(w // bin_size, shape[1])
    full = stain[: hh * bin_size, : ww * bin_size].reshape(hh, bin_size, ww, bin_size)
    out[:hh, :ww] = full.mean(axis=(1, 3))
    return out


def _geometry(table: BinTable, centres: NucleusCentres, settings: dict) -> tuple[cKDTree, np.ndarray]:
    """A table's KD-tree and its bins' signed nucleus distances, shared by all its token queries."""
    return bin_tree(table), centres.signed_distance(table.y, table.x, scale=settings["distance_scale_bins"])


def _tokens_of(
    table: BinTable, geometry: tuple, centres: NucleusCentres, y: np.ndarray, x: np.ndarray, settings: dict
) -> Neighbourhoods:
    """Tokens of the centre bins ``(y, x)`` from ``table`` and its :func:`_geometry`."""
    tree, table_distance = geometry
    return neighbourhoods(
        table,
        table_distance,
        y,
        x,
        centres.signed_distance(y, x, scale=settings["distance_scale_bins"]),
        n_neighbours=settings["n_neighbours"],
        radius=settings["radius_bins"],
        tree=tree,
    )


def _training_set(
    index: TranscriptIndex, stain, nuclei, lut, centres: NucleusCentres, *, bin_size: int, tile: int,
    max_tiles: int, erosion_px: int, negative_distance: float, dark: float, max_per_class: int,
    validation_fraction: float, settings: dict, rng: np.random.Generator,
) -> TrainingSet:  # fmt: skip
    """Balanced samples from up to ``max_tiles`` tiles of ``tile`` bins holding nuclei, their tokens,
    and a validation mask holding out the rightmost ``validation_fraction`` of them.
    """
    h, w = index.shape
    keep = tiles_with_nuclei(nuclei, tile, max_tiles=max_tiles, rng=rng, bin_size=bin_size, method="SSL-CST")
    margin = int(np.ceil(settings["radius_bins"]))
    positives, negatives, tokens_pos, tokens_neg, tables, shift = [], [], [], [], [], 0
    for y0, y1, x0, x1 in keep:
        pix = (y0 * bin_size, min(y1 * bin_size, h), x0 * bin_size, min(x1 * bin_size, w))
        nuc = np.asarray(nuclei[pix[0] : pix[1], pix[2] : pix[3]])
        shape = (y1 - y0, x1 - x0)
        eroded = sample_bins(erode_labels(nuc, erosion_px), (0, shape[0], 0, shape[1]), bin_size)
        nucleus = sample_bins(nuc, (0, shape[0], 0, shape[1]), bin_size)
        table = BinTable.read(index, (y0 - margin, y1 + margin, x0 - margin, x1 + margin), bin_size=bin_size,
                              gene_lut=lut)  # fmt: skip
        expressed = np.zeros(shape, bool)
        inside = (table.y >= y0) & (table.y < y1) & (table.x >= x0) & (table.x < x1)
        expressed[table.y[inside] - y0, table.x[inside] - x0] = True
        bin_stain = _bin_means(np.asarray(stain[pix[0] : pix[1], pix[2] : pix[3]], np.float32), bin_size, shape)
        pos, neg = select_samples(eroded, nucleus, expressed, bin_stain, (y0, x0), centres,
                                  negative_distance=negative_distance, dark=dark)  # fmt: skip
        geometry = _geometry(table, centres, settings)
        for kind, out, tok in ((pos, positives, tokens_pos), (neg, negatives, tokens_neg)):
            found = _tokens_of(table, geometry, centres, kind.y, kind.x, settings)
            tok.append(Neighbourhoods(np.where(found.token_bin >= 0, found.token_bin + shift, -1), found.position,
                                      found.distance, found.valid))  # fmt: skip
            out.append(kind)
        tables.append(table)
        shift += len(table)

    def cat(parts, cls):
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    all_pos, all_neg = cat(positives, Samples), cat(negatives, Samples)
    pick_pos, pick_neg = balance(len(all_pos), len(all_neg), max_per_class=max_per_class, rng=rng)
    rows = np.r_[pick_pos, pick_neg + len(all_pos)]
    samples = cat([all_pos, all_neg], Samples).subset(rows)
    tokens = cat(tokens_pos + tokens_neg, Neighbourhoods)
    tokens = Neighbourhoods(tokens.token_bin[rows], tokens.position[rows], tokens.distance[rows], tokens.valid[rows])
    cut = np.quantile(samples.x, 1 - validation_fraction)
    validation = samples.x > cut
    if not validation.any() or validation.all():
        validation = np.zeros(len(samples), bool)
        n_held = max(int(round(len(samples) * validation_fraction)), 1)
        validation[np.argsort(samples.x, kind="stable")[-n_held:]] = True
    logger.info("SSL-CST: %d positive and %d negative samples available on %d tiles; %d used (%d held out)",
                len(all_pos), len(all_neg), len(keep), len(samples), validation.sum())  # fmt: skip
    return TrainingSet(samples, tokens, BinTable.concat(tables), validation)


def _network_outputs(
    index: TranscriptIndex, model: SSLCSTModel, lut: np.ndarray, centres: NucleusCentres, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Foreground probability and direction probabilities ``(1 + n_directions, n)`` of centre bins
    ``(yy, xx)``; bins without a transcript in reach get zeros.
    """
    settings = _settings(model)
    margin = int(np.ceil(model.radius_bins))
    window = (int(yy.min()) - margin, int(yy.max()) + 1 + margin, int(xx.min()) - margin, int(xx.max()) + 1 + margin)
    table = BinTable.read(index, window, bin_size=model.bin_size, gene_lut=lut)
    out = np.zeros((1 + model.network.config.n_directions, len(yy)), np.float32)
    if len(table) == 0:
        return out
    geometry = _geometry(table, centres, settings)
    # Centre bins with a transcript in reach, in chunks: memory stays O(chunk x tokens) per block.
    todo = np.flatnonzero(geometry[0].query(np.c_[yy, xx], distance_upper_bound=model.radius_bins)[0] < np.inf)
    for chunk in np.array_split(todo, max(-(-len(todo) // _BATCH), 1)):
        if len(chunk):
            tokens = _tokens_of(table, geometry, centres, yy[chunk], xx[chunk], settings)
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


def _settings(model: SSLCSTModel) -> dict:
    return {
        "n_neighbours": model.n_neighbours,
        "radius_bins": model.radius_bins,
        "distance_scale_bins": model.distance_scale_um / (model.bin_size * model.pixel_size_um),
    }


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
    # float64 holds nucleus ids exactly up to 2**53
    stack = da.concatenate([fields.astype(np.float64), at_bins.astype(np.float64).rechunk(fields.chunks[1:])[None]])
    labels = segment_blockwise(stack, _flow_block, block_size=bins, halo=halo_bins, **flow_kwargs)
    return bins_to_pixels(labels, b, (h, w))


def sslcst(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    channel: int | str | None = None,
    model: SSLCSTModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    bin_um: float = 0.5,
    n_neighbours: int = 48,
    radius_um: float = 6.0,
    distance_scale_um: float = 5.0,
    min_gene_counts: int = 10,
    erosion_um: float = 0.5,
    negative_distance_um: float = 15.0,
    dark_quantile: float = 0.5,
    max_samples: int = 20_000,
    validation_fraction: float = 0.2,
    distance_dropout: float = 0.0,
    dim: int = 64,
    layers: int = 8,
    heads: int = 1,
    steps: int = 600,
    batch_size: int = 256,
    lr: float = 1e-3,
    patience: int = 4,
    tile_um: float = 128.0,
    max_tiles: int = 24,
    prior_radius_um: float = 8.0,
    foreground_threshold: float = 0.1,
    stride: int = 2,
    merge_distance_um: float = 1.5,
    min_cell_area_um2: float = 20.0,
    max_hole_area_um2: float = 10.0,
    max_cell_diameter_um: float = 30.0,
    block_size: int = 2048,
    device: str | None = None,
    seed: int = 0,
    key_added: str = CELL_LABELS_KEY,
    shapes_key: str = CELL_SHAPES_KEY,
    table_key: str = TABLE_KEY,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
    progress: bool = True,
) -> SpatialData | None:
    """Segment cells with SSL-CST: self-supervised transcript-to-cell directions and flow tracking.

    Transcripts are binned on a grid of ``bin_um``. Each bin becomes a sequence of tokens: itself
    and its ``n_neighbours`` nearest non-empty bins within ``radius_um``, each carrying its
    expression, its position relative to the centre and its signed distance to the nearest nucleus
    centroid (distance minus the nucleus's radius, over ``distance_scale_um``; SSL-CST's released
    code takes the farthest centroid, a bug not reproduced). A pre-LayerNorm transformer with
    bias-free MLPs (:class:`jointseg.models.PointTransformer`) predicts, for the centre bin, one of
    16 directions to its cell's centre and whether it is in a cell.

    Without a ``model``, it is trained on this slide without annotation: positives are bins with
    transcripts inside the nuclei (eroded by ``erosion_um``), labelled with the direction to their
    nucleus centroid; negatives are empty bins outside nuclei, farther than
    ``negative_distance_um`` from every centroid and no brighter than the stain's
    ``dark_quantile``; both are balanced 1:1 and the direction loss is masked for negatives.
    AdamW trains on random batches (rotation/mirror augmentation: token positions and direction
    classes turned together by multiples of 22.5 degrees) with early stopping on the
    rightmost ``validation_fraction`` of the samples (a held-out spatial region).

    Cells are then traced block by block: direction probabilities are multiplied by a prior that
    allows only the directions to nucleus centroids within ``prior_radius_um`` (else 1.25 times
    that, else all), the most likely direction and the foreground are smoothed by two 3 x 3 means,
    bins above ``foreground_threshold`` follow their directions to sinks (stopping where the
    direction turns back), sinks within ``merge_distance_um`` or on one nucleus make one cell,
    small holes are filled and cells under ``min_cell_area_um2`` dropped.

    Parameters
    ----------
    sdata
        SpatialData with the stain, the transcripts and the nuclei.
    image_key, points_key, nuclei_key, channel
        The stain (output pixel grid; the negatives' darkness), transcripts, nuclei labels from
        :func:`jointseg.pp.nuclei`, and the stain channel of a multichannel image.
    model
        A trained :class:`jointseg.models.SSLCSTModel` or the path of a saved one: skip training.
    save_model
        Write the trained model there.
    bin_um, n_neighbours, radius_um, distance_scale_um
        Bins and tokens (see above).
    min_gene_counts
        Genes with fewer transcripts are left out of the expression embedding.
    erosion_um, negative_distance_um, dark_quantile, max_samples
        Sample selection; at most ``max_samples`` positives (and as many negatives).
    validation_fraction
        Held-out share of the samples (by position: the rightmost ones).
    dim, layers, heads
        Transformer width, depth and attention heads.
    steps, batch_size, lr, patience
        Optimiser steps (at most), batch, AdamW learning rate, and evaluations (every 100 steps)
        without improvement before stopping.
    tile_um, max_tiles
        Training tiles holding nuclei, drawn at random.
    distance_dropout
        Share of the training samples whose distance features are zeroed (all their tokens), so
        that the foreground is also learnt from the transcripts: the distance to the nearest
        nucleus alone separates the positives from the negatives, since they are chosen by it. Not
        in the paper; the default 0 is the paper's training. On the real crop, 0.5 assigned fewer
        transcripts at a lower MECR; on synthetic truth the two were equal (see the benchmarks).
    prior_radius_um, foreground_threshold, merge_distance_um, min_cell_area_um2, max_hole_area_um2
        Post-processing (see above).
    stride
        The network runs on every ``stride``-th bin along each axis and its outputs are
        interpolated bilinearly in between (their smoothing spans 5 bins anyway). ``stride=2``
        made inference 3.7 times faster on the real crop, with the same quality there and on
        synthetic truth (see the benchmarks); 1 runs it on every bin, as the paper does.
    max_cell_diameter_um, block_size
        Halo and block edge (pixels) of the whole-slide run.
    device, seed
        Torch device (default: cuda, then mps, then cpu) and seed: same seed and device give the
        same labels.
    key_added, shapes_key, table_key, coordinate_system, overwrite, copy, progress
        As in :func:`jointseg.seg.genesegnet`.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds labels, shapes and a table as the other methods,
    with the parameters and the training log in ``table.uns["jointseg"][key_added]``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.sslcst(sdata, image_key="morphology", points_key="transcripts", layers=2, steps=20,
    ...               negative_distance_um=4.0, progress=False)
    >>> "cell_labels" in sdata.labels
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    check_outputs_free(sdata, [key_added, shapes_key, table_key], points_key, overwrite=overwrite)
    if nuclei_key not in sdata.labels:
        raise KeyError(
            f"No nuclei labels {nuclei_key!r}: run jg.pp.nuclei(sdata, image_key={image_key!r}) first "
            f"(available labels: {list(sdata.labels)})."
        )
    counts = {"steps": steps, "batch_size": batch_size, "n_neighbours": n_neighbours, "stride": stride}
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    device = select_device(device)
    start = time.perf_counter()
    stain = image_2d(sdata, image_key, channel=channel).data
    shape = tuple(int(s) for s in stain.shape)
    index = build_transcript_index(
        sdata, points_key, image_key, shape=shape, block_size=512, coordinate_system=coordinate_system
    )
    px = pixel_size_um(sdata, image_key, coordinate_system)
    nuclei = labels_2d(sdata, nuclei_key).data
    if model is not None and not isinstance(model, SSLCSTModel):
        model = SSLCSTModel.load(model, device=device)
    train = model is None
    if train:
        bin_size = max(int(round(bin_um / px)), 1)
        codes, lut = select_genes(index, min_gene_counts)
        torch.manual_seed(seed)
        model = SSLCSTModel.new(
            TransformerConfig(n_genes=len(codes), dim=dim, layers=layers, heads=heads),
            genes=[str(g) for g in index.genes[codes]], bin_size=bin_size, pixel_size_um=px,
            n_neighbours=n_neighbours, radius_bins=radius_um / (bin_size * px), distance_scale_um=distance_scale_um,
            device=device,
        )  # fmt: skip
    else:
        model.to(device)
        lut = gene_lookup(index, model.genes)
        if abs(px / model.pixel_size_um - 1) > 0.1:
            logger.warning("SSL-CST model was trained at %.3f um/px; this image has %.3f um/px.",
                           model.pixel_size_um, px)  # fmt: skip
    bin_um_used = model.bin_size * px
    centres = nucleus_centres(nuclei, model.bin_size)
    if train:
        rng = np.random.default_rng(seed)
        dark = float(sampled_percentiles(stain, [100 * dark_quantile])[0])
        data = _training_set(
            index, stain, nuclei, lut, centres, bin_size=model.bin_size,
            tile=max(int(round(tile_um / bin_um_used)), 8), max_tiles=max_tiles,
            erosion_px=int(round(erosion_um / px)), negative_distance=negative_distance_um / bin_um_used, dark=dark,
            max_per_class=max_samples, validation_fraction=validation_fraction, settings=_settings(model), rng=rng,
        )  # fmt: skip
        params = SSLCSTParams(
            max_steps=steps, batch_size=batch_size, lr=lr, patience=patience, distance_dropout=distance_dropout
        )
        model.training_log = train_transformer(model, data, params, seed=seed, progress=progress)
        model.training_log.update({"device": device, "n_positive": int(data.samples.foreground.sum())})
    if save_model is not None:
        model.save(save_model)
    trained_s = time.perf_counter() - start
    prior_radius = prior_radius_um / bin_um_used
    labels = predict_sslcst_cells(
        index, model, lut, centres, nuclei, block_size=block_size,
        halo_bins=int(np.ceil(max_cell_diameter_um / bin_um_used)), prior_radius=prior_radius, stride=stride,
        flow_kwargs={
            "threshold": foreground_threshold, "merge_distance": merge_distance_um / bin_um_used,
            "max_steps": int(np.ceil(2 * max_cell_diameter_um / bin_um_used)),
            "max_hole_area": int(round(max_hole_area_um2 / bin_um_used**2)),
            "min_area": max(int(round(min_cell_area_um2 / bin_um_used**2)), 1),
        },
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "bin_um": bin_um_used, "n_neighbours": model.n_neighbours,
        "radius_um": model.radius_bins * bin_um_used, "distance_scale_um": model.distance_scale_um,
        "prior_radius_um": prior_radius_um, "foreground_threshold": foreground_threshold, "stride": stride,
        "merge_distance_um": merge_distance_um, "distance_dropout": distance_dropout,
        "min_cell_area_um2": min_cell_area_um2,
        "max_cell_diameter_um": max_cell_diameter_um, "block_size": block_size, "device": device, "seed": seed,
        "network": model.network.config.to_dict(), "training_log": model.training_log,
        "training_seconds": trained_s,
    }  # fmt: skip
    write_segmentation(
        sdata, labels, index, image_key=image_key, points_key=points_key, nuclei_key=nuclei_key, labels_key=key_added,
        shapes_key=shapes_key, table_key=table_key, method="sslcst", params=params,
        coordinate_system=coordinate_system, overwrite=overwrite,
    )  # fmt: skip
    logger.info("SSL-CST: done in %.1f s (training %.1f s)", time.perf_counter() - start, trained_s)
    return sdata if copy else None
