"""``jointseg demo``: the best pipeline on the real Xenium crop, beside the baseline and the vendor."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from spatialdata import SpatialData

from jointseg.cli._common import methods, run_pipeline

logger = logging.getLogger("jointseg")


def cmd_demo(args: argparse.Namespace) -> None:
    """Segment the crop, compare, type the cells, draw and export."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import jointseg as jg

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset = args.subset
    try:
        sdata = jg.datasets.xenium_breast(subset=subset)
    except RuntimeError as err:
        if subset != "full":
            raise
        logger.warning("%s Falling back to the crop shipped with jointseg.", err)
        subset = "small"
        sdata = jg.datasets.xenium_breast(subset=subset)
    print(f"Xenium human breast cancer crop ({subset}): Janesick et al. 2023, 10x Genomics, CC BY 4.0")
    options = {"steps": args.steps} if args.steps is not None else {}
    refine = not args.no_refine
    kw = {"image_key": "morphology", "points_key": "transcripts", "method": args.method, "quiet": args.quiet, **options}
    if refine:  # the method's own cells first, for the comparison row
        own = run_pipeline(sdata, refine=False, key_added="unrefined_labels", shapes_key="unrefined_boundaries",
                           table_key="unrefined_table", **kw)  # fmt: skip
        sdata["transcripts"] = sdata["transcripts"].drop(columns="jg_cell_id")
    times = run_pipeline(sdata, refine=refine, **kw)
    name = f"{args.method} + refine" if refine else args.method
    markers = jg.datasets.markers("breast")
    pairs = jg.metrics.exclusive_marker_pairs(markers, genes=list(sdata["table"].var_names))
    rows = {name: _demo_row(sdata, "table", pairs)}
    if refine:
        times = {"nuclei_s": own["nuclei_s"], f"{args.method}_s": own["segmentation_s"],
                 f"{args.method} + refine_s": times["segmentation_s"]}  # fmt: skip
        rows[f"{args.method} (not refined)"] = _demo_row(sdata, "unrefined_table", pairs)
    distance, rows["nuclei expanded to the same fraction"] = _matched_expansion(sdata, rows[name]["assigned"], pairs)
    rows["Xenium's own cells (vendor)"] = _vendor_row(sdata, pairs)
    jg.tl.gene_scores(sdata)
    jg.tl.pseudolabels(sdata)
    table = sdata["table"]
    fig, axes = plt.subplots(1, 2, figsize=(16, 6.5))
    jg.pl.segmentation(sdata, image_key="morphology", nuclei_key="nuclei", ax=axes[0])
    axes[0].set_title(f"{name}: {table.n_obs} cells (red), nuclei (cyan)")
    h, w = sdata["morphology"].shape[-2:]
    zoom = (h // 2 - 200, h // 2 + 200, w // 2 - 300, w // 2 + 300)
    jg.pl.segmentation(sdata, image_key="morphology", points_key="transcripts", region=zoom, ax=axes[1])
    axes[1].set_title("zoom: transcripts assigned (gold) / unassigned (grey)")
    fig.tight_layout()
    figure = out / "segmentation.png"
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    plt.close(fig)
    ax = jg.pl.cell_types(sdata, image_key="morphology")
    ax.figure.savefig(out / "cell_types.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    ax = jg.pl.cluster_votes(sdata)
    ax.figure.savefig(out / "cluster_votes.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    top = table.var.sort_values("jg_entropy_rank").index[:10]
    print("most cell-specific genes (spatial entropy):", ", ".join(top))
    counts = table.obs["cell_type"].value_counts()
    print("cell types (pseudolabels):", ", ".join(f"{k} {v}" for k, v in counts.items()))
    jg.io.write_zarr(sdata, out / "demo.zarr", overwrite=True)
    try:
        explorer = jg.io.write_xenium_explorer(sdata, out / "explorer", shapes_key="cell_boundaries", overwrite=True)
        print(f"Xenium Explorer: open {explorer / 'experiment.xenium'}")
    except ImportError as err:
        print(f"Xenium Explorer export skipped: {err}")
    frame = pd.DataFrame(rows).T
    print(f"\n{'':<36} cells  assigned  median tx/cell  MECR ({len(pairs)} exclusive marker pairs)")
    for row_name, r in frame.iterrows():
        print(f"{row_name:<36} {r['cells']:>5.0f}  {r['assigned']:>7.1%}  {r['median']:>14.0f}  {r['mecr']:.4f}")
    print(f"(the same nuclei expanded by {distance:.1f} um assign the same fraction)")
    print(f"nuclei found: {int(sdata['nuclei'].max())}; wall time: "
          + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in times.items()))  # fmt: skip
    print(f"Wrote {out / 'demo.zarr'}, {figure}, {out / 'cell_types.png'} and {out / 'cluster_votes.png'}")


def _demo_row(sdata: SpatialData, table_key: str, pairs: list) -> dict[str, float]:
    import jointseg as jg

    summary = jg.metrics.assignment_summary(sdata[table_key], table_key=table_key)
    return {
        "cells": summary["n_cells"],
        "assigned": summary["fraction_assigned"],
        "median": summary["median_transcripts_per_cell"],
        "mecr": jg.metrics.mecr(sdata[table_key], pairs),
    }


def _matched_expansion(sdata: SpatialData, target: float, pairs: list) -> tuple[float, dict[str, float]]:
    """The uniform expansion of the same nuclei that assigns ``target`` of the transcripts (bisection
    on the distance, 0.5-30 um): the baseline a joint method must beat at equal assigned fraction.
    """
    import jointseg as jg

    lo, hi = 0.5, 30.0
    for _ in range(8):
        mid = (lo + hi) / 2
        out = jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", max_distance_um=mid,
                                   key_added="matched_labels", shapes_key="matched_boundaries",
                                   table_key="matched_table", overwrite=True, copy=True)  # fmt: skip
        row = _demo_row(out, "matched_table", pairs)
        lo, hi = (mid, hi) if row["assigned"] < target else (lo, mid)
    return mid, row


def _vendor_row(sdata: SpatialData, pairs: list) -> dict[str, float]:
    """The demo row of the vendor's own per-transcript cell ids (never an input; only compared)."""
    import anndata as ad
    from scipy import sparse

    import jointseg as jg

    points = sdata["transcripts"][["xenium_cell_id", "feature_name"]].compute()
    assigned = points[points["xenium_cell_id"] > 0]
    counts = pd.crosstab(assigned["xenium_cell_id"], assigned["feature_name"])
    table = ad.AnnData(sparse.csr_matrix(counts.to_numpy()), var=pd.DataFrame(index=counts.columns.astype(str)))
    return {
        "cells": len(counts),
        "assigned": len(assigned) / len(points),
        "median": float(np.median(counts.sum(axis=1))),
        "mecr": jg.metrics.mecr(table, pairs, layer=None),
    }


def add_parsers(sub: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", parents=parents, help="run the pipeline on the real Xenium breast crop")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--subset", default="full", choices=["full", "small"])
    p.add_argument("--method", default="expand_nuclei", choices=sorted(methods()))
    p.add_argument("--steps", type=int, default=None, help="training steps per round (network methods)")
    p.add_argument("--no-refine", action="store_true", help="the method's cells as they are (no jg.seg.refine)")
    p.set_defaults(func=cmd_demo)
