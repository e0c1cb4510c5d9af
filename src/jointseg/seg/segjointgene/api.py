"""SegJointGene (Ma & Wang 2026): cell boundaries and a gene ranking refined jointly, from per-gene
transcript channels, nucleus cores and a cell-type semantic U-Net scored gene by gene with CID.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from spatialdata import SpatialData, deepcopy

from jointseg._core.aggregation import nucleus_counts
from jointseg._core.config import config_dict, resolve_config
from jointseg._core.constants import CELL_LABELS_KEY, CELL_SHAPES_KEY, DEFAULT_CS, NUCLEI_KEY, TABLE_KEY
from jointseg._core.docs import d
from jointseg._core.genes import gene_lookup, select_genes
from jointseg._core.method_run import MethodRun, start_run
from jointseg._core.refinement import refine_params, weights_by_code
from jointseg.models import SegJointGeneModel
from jointseg.seg.segjointgene.celltypes import leiden_types, nearest_types, type_profiles
from jointseg.seg.segjointgene.config import SegJointGeneConfig
from jointseg.seg.segjointgene.infer import predict_segjointgene_cells
from jointseg.seg.segjointgene.train import gene_ranking, train_on_slide
from jointseg.tl._gene_scores import gene_scores

logger = logging.getLogger("jointseg")

_TUNED_DOC = """\
steps, max_rounds
    Optimiser steps per round; round limit (one round: CID, growth, retraining).
resolution
    Leiden resolution of the nuclei's initial cell types when training. A saved model types the
    nuclei itself (each takes the model's type whose nucleus profile it correlates with best).
cid_top, fill, max_expansion_um
    The growth rule: a bin's CID support must be in the top ``cid_top`` of its type's confident
    bins; ``fill`` shares the foreground the rule left among the nearest cells; cells grow at most
    ``max_expansion_um`` beyond their nucleus (None: 1.25 times the 95th percentile of the extents
    estimated from the transcripts; 10 um before 0.2).
prior_expansion_um
    Warm-up labels: nuclei grown this far into the transcript foreground. None: each nucleus's
    extent estimated from the transcripts around it (as :func:`expand_nuclei`)."""
d.params["segjointgene_tuned"] = _TUNED_DOC


def _config(config: SegJointGeneConfig | None, legacy: dict[str, Any], method: str) -> tuple[SegJointGeneConfig, dict]:
    """The config, and the tuned options passed under their 0.1 names (``max_iterations``)."""
    renamed = {}
    if "max_iterations" in legacy:
        warnings.warn(f"{method}: max_iterations is now max_rounds.", FutureWarning, stacklevel=3)
        renamed["max_rounds"] = legacy.pop("max_iterations")
    return resolve_config(SegJointGeneConfig, config, legacy, method=method), renamed


def _slide_types(run: MethodRun, model, config: SegJointGeneConfig, *, resolution: float, seed: int):
    """The genes (the model's, or those with enough transcripts), their channel lookup, the cell types
    of the nuclei on this slide and each type's nucleus profile.

    Without a model, the types are Leiden clusters. With one, each nucleus takes the model's type
    whose profile it correlates with best: Leiden on another slide would number its clusters in its
    own order, unrelated to the classes the network learnt. Model files written before the profiles
    were stored fall back to Leiden and must find as many clusters.
    """
    if model is None:
        codes, lut = select_genes(run.index, config.min_gene_counts)
        genes = [str(g) for g in run.index.genes[codes]]
    else:
        genes, lut = model.genes, gene_lookup(run.index, model.genes)
    counts = nucleus_counts(run.nuclei(), run.index, lut, len(genes))
    if model is not None and model.type_profiles is not None:
        type_of = nearest_types(counts, model.type_profiles, min_counts=config.min_nucleus_counts)
        logger.info("SegJointGene: %d nuclei typed by the model's %d type profiles.", (type_of > 0).sum(),
                    len(model.types))  # fmt: skip
        return genes, lut, type_of, list(model.types), model.type_profiles
    type_of, type_names = leiden_types(counts, min_counts=config.min_nucleus_counts, resolution=resolution, seed=seed)
    if len(type_names) < 2:
        raise ValueError(
            "Leiden found a single cell type among the nuclei: SegJointGene needs at least two to grow cells by "
            f"type. Raise resolution (now {resolution})."
        )
    return genes, lut, type_of, type_names, type_profiles(counts, type_of, len(type_names))


def _check_cid_top(cid_top: float) -> None:
    if not 0 < cid_top <= 1:
        raise ValueError(f"cid_top must be in (0, 1], got {cid_top}.")


@d.dedent
def train_segjointgene(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    steps: int = 200,
    max_rounds: int = 4,
    resolution: float = 0.5,
    cid_top: float = 0.1,
    fill: bool = True,
    max_expansion_um: float | None = None,
    prior_expansion_um: float | None = None,
    config: SegJointGeneConfig | None = None,
    device: str | None = None,
    seed: int = 0,
    coordinate_system: str = DEFAULT_CS,
    progress: bool = True,
    **legacy: Any,
) -> SegJointGeneModel:
    """Train SegJointGene on a slide without annotations (see :func:`segjointgene`, which calls this).

    Parameters
    ----------
    %(inputs)s
    %(segjointgene_tuned)s
    %(config)s
    device, seed, coordinate_system, progress
        As in :func:`segjointgene`.

    Returns
    -------
    The trained :class:`jointseg.models.SegJointGeneModel`, with its CID scores and per-round log.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> config = jg.seg.SegJointGeneConfig(cid_steps=2, min_nucleus_counts=3)
    >>> model = jg.seg.train_segjointgene(sdata, steps=5, max_rounds=1, resolution=1.0, config=config, progress=False)
    >>> model.cid.shape == (len(model.types), len(model.genes))
    True

    """
    _check_cid_top(cid_top)
    config, renamed = _config(config, legacy, "train_segjointgene")
    max_rounds = renamed.get("max_rounds", max_rounds)
    run = start_run(
        sdata, method="segjointgene", title="SegJointGene",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=None, at_least_one={"steps": steps, "max_rounds": max_rounds}, device=device,
        coordinate_system=coordinate_system,
    )  # fmt: skip
    genes, lut, type_of, type_names, profiles = _slide_types(run, None, config, resolution=resolution, seed=seed)
    return train_on_slide(
        run, config=config, genes=genes, lut=lut, type_of=type_of, type_names=type_names, type_profiles=profiles,
        steps=steps, max_rounds=max_rounds, cid_top=cid_top, fill=fill, prior_expansion_um=prior_expansion_um,
        max_expansion_um=max_expansion_um, seed=seed, progress=progress,
    )  # fmt: skip


@d.dedent
def segjointgene(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    model: SegJointGeneModel | str | os.PathLike | None = None,
    save_model: str | os.PathLike | None = None,
    steps: int = 200,
    max_rounds: int = 4,
    resolution: float = 0.5,
    cid_top: float = 0.1,
    fill: bool = True,
    max_expansion_um: float | None = None,
    prior_expansion_um: float | None = None,
    max_cell_diameter_um: float | None = None,
    refine: bool | Mapping[str, Any] = True,
    cid_weights: bool = False,
    config: SegJointGeneConfig | None = None,
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
    **legacy: Any,
) -> SpatialData | None:
    """Segment cells with SegJointGene and rank the genes that shape them.

    The input is one channel per gene: transcripts binned on a grid of ``config.bin_um`` and blurred
    (``config.gene_sigma_um``), held sparse (see :class:`jointseg.models.GeneEncoder`). Nuclei are the
    immutable cores of the cells; their initial cell types are Leiden clusters of nucleus-level
    counts (scanpy). A semantic U-Net learns, per bin, background or a cell type
    (class-weighted cross-entropy + soft Dice), first on the nuclei grown by
    ``prior_expansion_um`` into the transcript foreground (warm-up). Each iteration then:

    1. scores every (cell type, gene) pair on ``config.cid_windows`` windows with CID, the information-
       discarding score (:mod:`jointseg.seg.segjointgene.cid`): how little noise a gene's channel tolerates
       before the type's logits change;
    2. grows every cell from its nucleus by balanced dilation into bins where the network's class
       is the cell's type, the smoothed confidence exceeds ``config.confidence`` and the CID support
       (CID-weighted gene expression of that type) is in the top ``cid_top`` of that type's
       confident bins, up to ``max_expansion_um``, keeping only what connects to the core, filling
       enclosed holes and restoring the core;
    3. retrains on the new labels (one round).

    It stops when fewer than 1% of the bins change and the top 50 genes are stable (Jaccard
    >= 0.9), or after ``max_rounds``; both numbers are logged per iteration. The slide is
    then segmented block by block with the final network and CID scores.

    Deviations from the released code, for a CPU budget: the network works on 1 um bins; the CID
    support of a bin is the CID-weighted sum of its gene channels (the per-(type, gene) scores
    projected back), so the growth rule applies at every bin of a slide without running CID there;
    training continues from the previous iteration's weights.

    Parameters
    ----------
    %(inputs)s
    %(model)s
        With a model, the nuclei's cell types still come from Leiden on this slide.
    %(segjointgene_tuned)s
    max_cell_diameter_um
        Largest expected cell: the halo between blocks of the whole-slide run (None: estimated from
        the nuclei and their extents, at least 40 um).
    %(config)s
    %(run)s
    %(refine)s
    cid_weights
        Let the CID scores decide which genes count in the refinement: each gene's evidence weighs
        its CID score (mean over types; genes not scored take the median), as
        :func:`jointseg.seg.refine` with ``gene_weights``. Off by default: on the Xenium breast crop
        it changed nothing beyond noise (MECR against matched expansion -13.9%% instead of
        -14.2%%), and sharper weights (the scores minus their minimum, or that squared) mixed more
        (-12.0%%, -8.1%%; docs: results).
    %(outputs)s
    %(progress)s

    Returns
    -------
    %(segmentation_returns)s

    And to the table: ``var["jg_cid_score"]`` (mean CID over types; NaN for genes not scored),
    ``var["jg_cid_rank"]`` (1 = most informative), ``varm["jg_cid_by_type"]`` (genes x types, the
    types named in ``uns["jointseg"][key_added]["cid_types"]``), ``obs["jg_type"]`` (the cell's
    type, categorical) and the spatial entropy of :func:`jointseg.tl.gene_scores`.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.segjointgene(sdata, image_key="morphology", points_key="transcripts", steps=5, max_rounds=1,
    ...                     resolution=1.0, config=jg.seg.SegJointGeneConfig(cid_steps=2, min_nucleus_counts=3),
    ...                     progress=False)
    >>> "jg_cid_rank" in sdata["table"].var
    True

    """
    if copy:
        sdata = deepcopy(sdata)
    _check_cid_top(cid_top)
    if cid_weights and not refine:
        raise ValueError("cid_weights weighs the genes of the refinement: it needs refine.")
    config, renamed = _config(config, legacy, "segjointgene")
    max_rounds = renamed.get("max_rounds", max_rounds)
    run = start_run(
        sdata, method="segjointgene", title="SegJointGene",
        image_key=image_key, points_key=points_key, nuclei_key=nuclei_key,
        outputs=[key_added, shapes_key, table_key], overwrite=overwrite,
        at_least_one={"steps": steps, "max_rounds": max_rounds}, device=device, coordinate_system=coordinate_system,
    )  # fmt: skip
    model = run.load_model(model, SegJointGeneModel)
    genes, lut, type_of, type_names, profiles = _slide_types(run, model, config, resolution=resolution, seed=seed)
    if model is None:
        model = train_on_slide(
            run, config=config, genes=genes, lut=lut, type_of=type_of, type_names=type_names, type_profiles=profiles,
            steps=steps, max_rounds=max_rounds, cid_top=cid_top, fill=fill, prior_expansion_um=prior_expansion_um,
            max_expansion_um=max_expansion_um, seed=seed, progress=progress,
        )  # fmt: skip
    elif len(model.types) != len(type_names):
        raise ValueError(
            f"The model has {len(model.types)} cell types but Leiden found {len(type_names)} on this slide; "
            "use the resolution it was trained with, or retrain."
        )
    if save_model is not None:
        model.save(save_model)
    model.network.eval()
    trained_s = time.perf_counter() - run.started
    px = run.pixel_size_um
    max_cell_diameter_um = run.largest_cell_um(max_cell_diameter_um, at_least=40.0)
    labels = predict_segjointgene_cells(
        run.index, model, lut, run.nuclei(), type_of, block_size=block_size,
        halo=int(np.ceil(max_cell_diameter_um / px)), window=64, stride=56, confidence=config.confidence,
        max_distance=run.growth_limit_um(max_expansion_um) / px, max_hole_area=int(round(10.0 / px**2)), fill=fill,
    )  # fmt: skip
    params = {
        "nuclei_key": nuclei_key, "steps": steps, "max_rounds": max_rounds, "resolution": resolution,
        "cid_top": cid_top, "fill": fill, "max_expansion_um": run.growth_limit_um(max_expansion_um),
        "prior_expansion_um": prior_expansion_um, "max_cell_diameter_um": max_cell_diameter_um,
        "block_size": block_size, "device": run.device, "seed": seed, "config": config_dict(config),
        "bin_um": model.bin_size * px, "network": model.network.config.to_dict(), "training_log": model.training_log,
        "training_seconds": trained_s, "cid_types": list(model.types), "cid_genes": list(model.genes),
        "cid_weights": cid_weights, **run.extent_params(),
    }  # fmt: skip
    weights = None
    if cid_weights:
        weights = weights_by_code(pd.Series(cid_scores(model.cid), index=model.genes), run.index.genes)
    run.finish(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
               overwrite=overwrite, refine=refine_params(refine, seed=seed), largest_cell_um=max_cell_diameter_um,
               gene_weights=weights)  # fmt: skip
    _write_gene_scores(sdata[table_key], model, type_of)
    gene_scores(sdata, table_key=table_key)
    return sdata if copy else None


def cid_scores(cid: np.ndarray) -> np.ndarray:
    """Each gene's CID score: its mean over the types that scored it (NaN where none did).

    Examples
    --------
    >>> cid_scores(np.array([[1.0, np.nan, np.nan], [3.0, 4.0, np.nan]]))
    array([ 2.,  4., nan])

    """
    overall = np.full(cid.shape[1], np.nan)
    scored = np.isfinite(cid).any(axis=0)
    overall[scored] = np.nanmean(cid[:, scored], axis=0)
    return overall


def _write_gene_scores(table, model: SegJointGeneModel, type_of: np.ndarray) -> None:
    """CID scores into ``table.var``/``varm`` (genes the model did not score: NaN, ranked last) and
    each cell's type into ``obs["jg_type"]``.
    """
    by_type = pd.DataFrame(model.cid.T, index=model.genes, columns=model.types).reindex(table.var_names)
    table.varm["jg_cid_by_type"] = by_type.to_numpy()
    order = gene_ranking(model.cid)
    overall = pd.Series(cid_scores(model.cid), index=model.genes)
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
