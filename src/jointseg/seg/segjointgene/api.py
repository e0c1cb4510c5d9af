"""SegJointGene (Ma & Wang 2026): cell boundaries and a gene ranking refined jointly, from per-gene
transcript channels, nucleus cores and a cell-type semantic U-Net scored gene by gene with CID.
"""

from __future__ import annotations

import logging
import os
import time

import dask
import numpy as np
import pandas as pd
import torch
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.expansion import expand_block
from jointseg._core.fields import locked, predict_fields_on_region
from jointseg._core.genes import gene_lookup, sample_bins, select_genes
from jointseg._core.outputs import check_outputs_free, write_segmentation
from jointseg._core.tiling import Block, BlockGrid, array_from_blocks
from jointseg._core.training import tiles_with_nuclei
from jointseg._core.transcripts import TranscriptIndex, build_transcript_index
from jointseg._core.utils import image_2d, labels_2d, pixel_size_um, resolve_key, select_device
from jointseg.models import SegJointGeneModel, SemanticConfig, bin_transcripts
from jointseg.seg.segjointgene.celltypes import leiden_types, nucleus_counts
from jointseg.seg.segjointgene.cid import CIDParams
from jointseg.seg.segjointgene.postprocess import grow_by_type
from jointseg.seg.segjointgene.train import (
    JointParams,
    TrainingTile,
    allowed_types,
    candidates,
    cid_weights,
    gene_ranking,
    joint_refinement,
)
from jointseg.tl._gene_scores import gene_scores

logger = logging.getLogger("jointseg")


def _training_tiles(
    index, nuclei, lut, *, bin_size, tile, max_tiles, prior_px, density_sigma_px, min_count, rng
) -> list[TrainingTile]:
    """Tiles of ``tile`` bins holding nuclei (at most ``max_tiles``, drawn at random), with round-0
    labels: the nuclei grown by ``prior_px`` into the transcript foreground, as in ``expand_nuclei``.
    """
    h, w = index.shape
    halo = int(np.ceil(prior_px)) + 2
    tiles = []
    for y0, _, x0, _ in tiles_with_nuclei(nuclei, tile, max_tiles=max_tiles, rng=rng, bin_size=bin_size,
                                          method="SegJointGene"):  # fmt: skip
        y1, x1 = y0 + tile, x0 + tile  # every tile is tile x tile bins, empty beyond the slide
        full = (y0 * bin_size, min(y1 * bin_size, h), x0 * bin_size, min(x1 * bin_size, w))
        ext = (max(full[0] - halo, 0), min(full[1] + halo, h), max(full[2] - halo, 0), min(full[3] + halo, w))
        nuc = np.asarray(nuclei[ext[0] : ext[1], ext[2] : ext[3]])
        prior = expand_block(nuc, index, ext, full, prior_px, density_sigma_px, min_count)
        labels = sample_bins(prior, (0, tile, 0, tile), bin_size)
        counts = bin_transcripts(index, (y0, y1, x0, x1), bin_size=bin_size, gene_lut=lut)
        tiles.append(TrainingTile(counts, sample_bins(nuclei, (y0, y1, x0, x1), bin_size), labels))
    return tiles


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


def segjointgene(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    model: SegJointGeneModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    bin_um: float = 1.0,
    gene_sigma_um: float = 1.5,
    min_gene_counts: int = 20,
    min_nucleus_counts: int = 10,
    resolution: float = 0.5,
    steps: int = 200,
    max_iterations: int = 4,
    cid_top: float = 0.1,
    fill: bool = True,
    confidence: float = 0.5,
    max_expansion_um: float = 10.0,
    prior_expansion_um: float = 8.0,
    min_density_per_um2: float = 0.15,
    tile_um: float = 128.0,
    max_tiles: int = 24,
    cid_windows: int = 6,
    cid_steps: int = 20,
    cid_samples: int = 2,
    widths: tuple[int, ...] = (16, 32, 64),
    max_cell_diameter_um: float = 40.0,
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
    """Segment cells with SegJointGene and rank the genes that shape them.

    The input is one channel per gene: transcripts binned on a grid of ``bin_um`` and blurred
    (``gene_sigma_um``), held sparse (see :class:`jointseg.models.GeneEncoder`). Nuclei are the
    immutable cores of the cells; their initial cell types are Leiden clusters of nucleus-level
    counts (scanpy). A semantic U-Net learns, per bin, background or a cell type
    (class-weighted cross-entropy + soft Dice), first on the nuclei grown by
    ``prior_expansion_um`` into the transcript foreground (warm-up). Each iteration then:

    1. scores every (cell type, gene) pair on ``cid_windows`` windows with CID, the information-
       discarding score (:mod:`jointseg.seg.segjointgene.cid`): how little noise a gene's channel tolerates
       before the type's logits change;
    2. grows every cell from its nucleus by balanced dilation into bins where the network's class
       is the cell's type, the smoothed confidence exceeds ``confidence`` and the CID support
       (CID-weighted gene expression of that type) is in the top ``cid_top`` of that type's
       confident bins, up to ``max_expansion_um``, keeping only what connects to the core, filling
       enclosed holes and restoring the core;
    3. retrains on the new labels.

    It stops when fewer than 1% of the bins change and the top 50 genes are stable (Jaccard
    >= 0.9), or after ``max_iterations``; both numbers are logged per iteration. The slide is
    then segmented block by block with the final network and CID scores.

    Deviations from the released code, for a CPU budget: the network works on 1 um bins; the CID
    support of a bin is the CID-weighted sum of its gene channels (the per-(type, gene) scores
    projected back), so the growth rule applies at every bin of a slide without running CID there;
    training continues from the previous iteration's weights.

    Parameters
    ----------
    sdata
        SpatialData with the transcripts, the nuclei and the image whose pixel grid the labels use.
    image_key, points_key, nuclei_key
        The image (pixel grid; the stain is not a network input), transcripts and nuclei labels.
    model
        A trained :class:`jointseg.models.SegJointGeneModel` or the path of a saved one: skip
        training (nucleus types still come from Leiden on this slide).
    save_model
        Write the trained model there.
    bin_um, gene_sigma_um
        Bin edge and the gene channels' Gaussian width, in microns.
    min_gene_counts
        Genes with fewer transcripts are left out of the network (and get no CID score).
    min_nucleus_counts, resolution
        Nuclei with fewer transcripts get no initial type (their type is read from the network);
        Leiden resolution.
    steps, max_iterations
        Optimiser steps per iteration; iteration limit.
    cid_top, confidence, max_expansion_um
        The growth rule (see above).
    prior_expansion_um, min_density_per_um2
        Warm-up labels (as :func:`jointseg.seg.expand_nuclei`).
    tile_um, max_tiles
        Training tiles.
    cid_windows, cid_steps, cid_samples
        CID windows (32 x 32 bins each), optimiser steps and Monte-Carlo samples per step.
    widths
        U-Net widths per scale.
    max_cell_diameter_um, block_size
        Halo and block edge (pixels) of the whole-slide run.
    device, seed
        Torch device (default: cuda, then mps, then cpu) and seed: same seed and device give the
        same result.
    key_added, shapes_key, table_key, coordinate_system, overwrite, copy, progress
        As in :func:`jointseg.seg.genesegnet`.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds labels, shapes and a table as the other methods,
    and to the table: ``var["jg_cid_score"]`` (mean CID over types; NaN for genes not scored),
    ``var["jg_cid_rank"]`` (1 = most informative), ``varm["jg_cid_by_type"]`` (genes x types,
    the types named in ``uns["jointseg"][key_added]["cid_types"]``), ``obs["jg_type"]`` (the
    cell's type, categorical), the spatial entropy of :func:`jointseg.tl.gene_scores`, and the
    parameters and per-iteration log in ``uns["jointseg"][key_added]``.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.segjointgene(sdata, image_key="morphology", points_key="transcripts", steps=5, max_iterations=1,
    ...                     cid_steps=2, min_nucleus_counts=3, resolution=1.0, progress=False)
    >>> "jg_cid_rank" in sdata["table"].var
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
    for name, value in {"steps": steps, "max_iterations": max_iterations, "cid_steps": cid_steps}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if not 0 < cid_top <= 1:
        raise ValueError(f"cid_top must be in (0, 1], got {cid_top}.")
    device = select_device(device)
    start = time.perf_counter()
    shape = tuple(int(s) for s in image_2d(sdata, image_key).shape)
    index = build_transcript_index(
        sdata, points_key, image_key, shape=shape, block_size=512, coordinate_system=coordinate_system
    )
    px = pixel_size_um(sdata, image_key, coordinate_system)
    nuclei = labels_2d(sdata, nuclei_key).data
    if model is not None and not isinstance(model, SegJointGeneModel):
        model = SegJointGeneModel.load(model, device=device)
    if model is None:
        codes, lut = select_genes(index, min_gene_counts)
        genes = [str(g) for g in index.genes[codes]]
    else:
        model.to(device)
        genes = model.genes
        lut = gene_lookup(index, genes)
    type_of, type_names = leiden_types(
        nucleus_counts(nuclei, index, lut, len(genes)), min_counts=min_nucleus_counts, resolution=resolution, seed=seed
    )
    if len(type_names) < 2:
        raise ValueError(
            "Leiden found a single cell type among the nuclei: SegJointGene needs at least two to grow cells by "
            f"type. Raise resolution (now {resolution})."
        )
    bin_size = max(int(round(bin_um / px)), 1)
    if model is None:
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        config = SemanticConfig(
            n_genes=len(genes), n_types=len(type_names), sigma_bins=gene_sigma_um / (bin_size * px), widths=widths,
            embedding=widths[0],
        )  # fmt: skip
        model = SegJointGeneModel.new(
            config, genes=genes, types=type_names, bin_size=bin_size, pixel_size_um=px, device=device
        )
        tile = max(int(round(tile_um / (bin_size * px))) // model.network.multiple, 1) * model.network.multiple
        tiles = _training_tiles(
            index, nuclei, lut, bin_size=bin_size, tile=tile, max_tiles=max_tiles, prior_px=prior_expansion_um / px,
            density_sigma_px=2.0 / px, min_count=min_density_per_um2 * px**2, rng=rng,
        )  # fmt: skip
        params = JointParams(
            steps=steps, max_iterations=max_iterations, cid_top=cid_top, confidence=confidence,
            max_distance=max_expansion_um / (bin_size * px), cid_windows=cid_windows, fill=fill,
            crop=min(64, tile),
        )  # fmt: skip
        cid_params = CIDParams(steps=cid_steps, samples=cid_samples)
        log = joint_refinement(model, tiles, type_of, params, cid_params, seed=seed, progress=progress)
        log.update({"n_tiles": len(tiles), "tile_bins": tile, "device": device})
        model.training_log = log
    elif len(model.types) != len(type_names):
        raise ValueError(
            f"The model has {len(model.types)} cell types but Leiden found {len(type_names)} on this slide; "
            "use the resolution it was trained with, or retrain."
        )
    if save_model is not None:
        model.save(save_model)
    model.network.eval()
    trained_s = time.perf_counter() - start
    labels = predict_segjointgene_cells(
        index, model, lut, nuclei, type_of, block_size=block_size, halo=int(np.ceil(max_cell_diameter_um / px)),
        window=64, stride=56, confidence=confidence, max_distance=max_expansion_um / px,
        max_hole_area=int(round(10.0 / px**2)), fill=fill,
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "bin_um": bin_size * px, "gene_sigma_um": gene_sigma_um,
        "min_gene_counts": min_gene_counts, "min_nucleus_counts": min_nucleus_counts, "resolution": resolution,
        "cid_top": cid_top, "fill": fill, "confidence": confidence, "max_expansion_um": max_expansion_um,
        "cid_steps": cid_steps, "cid_samples": cid_samples, "block_size": block_size, "device": device, "seed": seed,
        "network": model.network.config.to_dict(), "training_log": model.training_log,
        "training_seconds": trained_s, "cid_types": list(model.types), "cid_genes": list(model.genes),
    }  # fmt: skip
    write_segmentation(
        sdata, labels, index, image_key=image_key, points_key=points_key, nuclei_key=nuclei_key, labels_key=key_added,
        shapes_key=shapes_key, table_key=table_key, method="segjointgene", params=params,
        coordinate_system=coordinate_system, overwrite=overwrite,
    )  # fmt: skip
    _write_gene_scores(sdata[table_key], model, type_of)
    gene_scores(sdata, table_key=table_key)
    logger.info("SegJointGene: done in %.1f s (training %.1f s)", time.perf_counter() - start, trained_s)
    return sdata if copy else None


def _write_gene_scores(table, model: SegJointGeneModel, type_of: np.ndarray) -> None:
    """CID scores into ``table.var``/``varm`` (genes the model did not score: NaN, ranked last) and
    each cell's type into ``obs["jg_type"]``.
    """
    by_type = pd.DataFrame(model.cid.T, index=model.genes, columns=model.types).reindex(table.var_names)
    table.varm["jg_cid_by_type"] = by_type.to_numpy()
    order = gene_ranking(model.cid)
    overall = pd.Series(np.nan, index=model.genes)
    scored = np.isfinite(model.cid).any(axis=0)
    overall[scored] = np.nanmean(model.cid[:, scored], axis=0)
    table.var["jg_cid_score"] = overall.reindex(table.var_names).to_numpy()
    rank = pd.Series(np.arange(1, len(order) + 1), index=np.asarray(model.genes)[order])
    ranks = rank.reindex(table.var_names).to_numpy(dtype=float)
    missing = np.isnan(ranks)
    ranks[missing] = len(order) + np.arange(1, missing.sum() + 1)
    table.var["jg_cid_rank"] = ranks.astype(np.int64)
    if "nucleus_id" in table.obs:
        ids = table.obs["nucleus_id"].to_numpy()
        codes = np.where(ids < len(type_of), type_of[np.minimum(ids, len(type_of) - 1)], 0)
        table.obs["jg_type"] = pd.Categorical.from_codes(codes - 1, categories=model.types)
