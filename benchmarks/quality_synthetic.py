"""Segmentation quality against synthetic truth, on realistic tissue regimes at several pixel sizes.

Run: ``.venv/bin/python benchmarks/quality_synthetic.py [--regimes epithelium stroma cultured tumour]
[--pixel-sizes 0.2125 0.5] [--methods expand_nuclei genesegnet segjointgene sslcst] [--seed 0]
[--background-border 0.75]``. ``--methods sslcst_nucleus_samples`` adds SSL-CST trained on the
paper's samples only (positives inside the nuclei); ``genesegnet_foreground_prior``, GeneSegNet
with its foreground field as the refinement's prior.

Each slide is :func:`jointseg.datasets.synthetic` with ``regime=...`` (cell sizes and shapes in
microns, boundaries that are not expansions of nuclei, type-specific expression, ambient
transcripts and spill across borders), ~150 um across (300 um for cultured cells). Nuclei come from
:func:`jointseg.pp.nuclei` (not the truth). Every method runs with its defaults. Beside them:
expansion of the same nuclei by fixed distances (other options at their defaults), and the best of
those chosen with the truth ("best expansion"). Prints, per regime and pixel size: nuclei F1, mean
IoU (best match per true cell) and AP at IoU 0.5 (TP / (TP + FP + FN)) of every method, the gap to
the best expansion, the share of the cells' borders that faces the background (``bg_border``, beside
the truth's: :func:`jointseg.metrics.background_border_fraction`), and wall times.
"""

import argparse
import logging
import time
from functools import partial

import numpy as np
import pandas as pd

import jointseg as jg
from jointseg._core.refinement import RefineParams

parser = argparse.ArgumentParser()
parser.add_argument("--regimes", nargs="+", default=["epithelium", "stroma", "cultured", "tumour"])
parser.add_argument("--pixel-sizes", type=float, nargs="+", default=[0.2125, 0.5])
parser.add_argument("--methods", nargs="+", default=["expand_nuclei", "refine", "genesegnet", "segjointgene", "sslcst"])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--background-border",
    type=float,
    default=RefineParams.background_border,
    help="refine option of every refined method",
)
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(message)s")

EXPANSIONS_UM = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0)


def refine_expansion(sdata, **kw):
    """``expand_nuclei`` with its defaults, then :func:`jointseg.seg.refine` (its cells under the usual keys)."""
    out = jg.seg.expand_nuclei(sdata, **kw)
    jg.seg.refine(out, labels_key="cell_labels", key_added="refined", table_key="refined_table",
                  background_border=args.background_border)  # fmt: skip
    out["cell_labels"], out["table"] = out["refined"], out["refined_table"]
    out["table"].uns["jointseg"]["cell_labels"] = out["table"].uns["jointseg"]["refined"]
    return out


def genesegnet_foreground_prior(sdata, *, refine, **kw):
    """GeneSegNet whose foreground field is the refinement's prior (``foreground_weight`` 1)."""
    return jg.seg.genesegnet(sdata, refine={**refine, "foreground_weight": 1.0}, **kw)


METHODS = {
    "expand_nuclei": jg.seg.expand_nuclei,
    "refine": refine_expansion,
    "genesegnet": jg.seg.genesegnet,
    "segjointgene": jg.seg.segjointgene,
    "sslcst": jg.seg.sslcst,
    # The paper's samples: positives inside the nuclei only (no cytoplasm tied by expression).
    "sslcst_nucleus_samples": partial(jg.seg.sslcst, config=jg.seg.SSLCSTConfig(cytoplasm_margin=None)),
    "genesegnet_foreground_prior": genesegnet_foreground_prior,
}
REFINE = {"background_border": args.background_border}  # the refinement's defaults but this one
records = []


def score(sdata, row, name, fn, **kw):
    """Run ``fn`` on a copy of the slide; record its mean IoU and AP against the true cells."""
    start = time.perf_counter()
    try:
        out = fn(sdata, image_key="morphology", points_key="transcripts", copy=True, overwrite=True, **kw)
    except ValueError as error:  # a method that refuses a regime says why; the table keeps the row
        print(f"{name} on {row['regime']} at {row['um_px']} um/px: {error}", flush=True)
        records.append(
            {**row, "method": name, "mean_iou": np.nan, "ap": np.nan, "seconds": np.nan, "bg_border": np.nan}
        )
        return
    scores = jg.metrics.instance_scores(out["cell_labels"].values, sdata["true_cells"].values)
    uns = out["table"].uns["jointseg"]["cell_labels"]
    records.append({**row, "method": name, "mean_iou": scores["mean_iou"], "ap": scores["ap"],
                    "seconds": time.perf_counter() - start,
                    "bg_border": jg.metrics.background_border_fraction(out["cell_labels"].values),
                    "extent_um": uns.get("cell_extent_um", {}).get("median", np.nan)})  # fmt: skip
    if not name.startswith("expand "):  # a long run shows each method as it ends
        last = records[-1]
        print(f"{row['regime']} {row['um_px']} um/px {name}: mean IoU {last['mean_iou']:.3f}, AP {last['ap']:.3f}, "
              f"{last['seconds']:.0f} s", flush=True)  # fmt: skip


for regime in args.regimes:
    for px in args.pixel_sizes:
        size = int(round((300.0 if regime == "cultured" else 150.0) / px))
        sdata = jg.datasets.synthetic(regime=regime, shape=(size, size), n_cells=1000, pixel_size=px, seed=args.seed)
        jg.pp.nuclei(sdata, image_key="morphology")
        nuclei_f1 = jg.metrics.instance_scores(sdata["nuclei"].values, sdata["true_nuclei"].values)["f1"]
        row = {"regime": regime, "um_px": px, "cells": int(sdata["true_cells"].values.max()), "nuclei_f1": nuclei_f1,
               "true_bg_border": jg.metrics.background_border_fraction(sdata["true_cells"].values)}  # fmt: skip

        for d in EXPANSIONS_UM:
            score(sdata, row, f"expand {d:g} um", jg.seg.expand_nuclei, max_distance_um=d)
        for name in args.methods:
            kw = {} if name in ("expand_nuclei", "refine") else {"progress": False, "refine": REFINE}
            score(sdata, row, f"{name} (defaults)", METHODS[name], **kw)
        print(f"done: {regime} at {px} um/px", flush=True)

df = pd.DataFrame(records)
fixed = df[df["method"].str.startswith("expand ")]
best = fixed.loc[fixed.groupby(["regime", "um_px"])["mean_iou"].idxmax()].set_index(["regime", "um_px"])
ours = df[df["method"].str.endswith("(defaults)")].copy()
ours["best expansion"] = [best.loc[(r, p), "method"] for r, p in zip(ours["regime"], ours["um_px"], strict=True)]
ours["best mean_iou"] = [best.loc[(r, p), "mean_iou"] for r, p in zip(ours["regime"], ours["um_px"], strict=True)]
ours["gap"] = ours["mean_iou"] - ours["best mean_iou"]
columns = ["regime", "um_px", "cells", "nuclei_f1", "method", "mean_iou", "ap", "best expansion", "best mean_iou",
           "gap", "bg_border", "true_bg_border", "extent_um", "seconds"]  # fmt: skip
pd.set_option("display.width", 200)
print("\nSynthetic regimes, seed", args.seed, "(gap = mean IoU minus the best expansion chosen with the truth)")
print(ours[columns].round(3).to_string(index=False))
print("\nFixed expansions (mean IoU):")
print(fixed.pivot_table(index=["regime", "um_px"], columns="method", values="mean_iou").round(3).to_string())
