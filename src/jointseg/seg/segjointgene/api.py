"""SegJointGene (Ma & Wang 2026): cell boundaries and a gene ranking refined jointly, from per-gene
transcript channels, nucleus cores and a cell-type semantic U-Net scored gene by gene with CID.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
import torch
from spatialdata import SpatialData, deepcopy

from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.genes import gene_lookup, select_genes
from jointseg._core.method_run import start_run
from jointseg.models import SegJointGeneModel, SemanticConfig
from jointseg.seg.segjointgene.celltypes import leiden_types, nucleus_counts
from jointseg.seg.segjointgene.cid import CIDParams
from jointseg.seg.segjointgene.infer import predict_segjointgene_cells
from jointseg.seg.segjointgene.train import (
    JointParams,
    gene_ranking,
    joint_refinement,
    training_tiles,
)
from jointseg.tl._gene_scores import gene_scores

logger = logging.getLogger("jointseg")


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
    if not 0 < cid_top <= 1:
        raise ValueError(f"cid_top must be in (0, 1], got {cid_top}.")
    run = start_run(
        sdata, method="SegJointGene", image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        at_least_one={"steps": steps, "max_iterations": max_iterations, "cid_steps": cid_steps}, device=device,
        coordinate_system=coordinate_system,
    )  # fmt: skip
    index, px, nuclei, device = run.index, run.pixel_size_um, run.nuclei(), run.device
    model = run.load_model(model, SegJointGeneModel)
    if model is None:
        codes, lut = select_genes(index, min_gene_counts)
        genes = [str(g) for g in index.genes[codes]]
    else:
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
        tiles = training_tiles(
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
    trained_s = time.perf_counter() - run.started
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
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite)  # fmt: skip
    _write_gene_scores(sdata[table_key], model, type_of)
    gene_scores(sdata, table_key=table_key)
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
