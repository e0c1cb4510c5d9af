"""Segmentation quality on the full real Xenium crop: GeneSegNet, SegJointGene and SSL-CST vs
nuclei expansion vs Xenium.

Run: ``.venv/bin/python benchmarks/quality_real_crop.py [--steps 150] [--methods genesegnet segjointgene sslcst]``
(fetches the crop once). GeneSegNet is trained once on the crop and applied with nuclei as cell
centres (the default) and with centres found from its own offset votes. SegJointGene is trained
once with its defaults and applied with and without the foreground fill (``fill=False`` is the
paper's growth rule alone). SSL-CST is trained with its defaults (the paper's training), then again
with distance dropout 0.5. Expansion is matched (bisection on the distance) to each method's
assigned fraction. Prints one table: cells, fraction of transcripts
assigned, median transcripts per cell, MECR on the exclusive marker pairs of the shipped breast
tables, cell calling (delta = 3, 5, 7 px), median convexity, elongation and area. The Xenium row
uses the vendor's per-transcript cell ids (no polygons ship with the crop, so its shape and
cell-calling columns are empty).
"""

import argparse
import logging
import re
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

import jointseg as jg

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=150)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--methods", nargs="+", default=["genesegnet", "segjointgene", "sslcst"])
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger("jointseg").setLevel(logging.WARNING)

sdata = jg.datasets.xenium_breast()
genes = list(sdata["transcripts"]["feature_name"].cat.categories)
pairs = jg.metrics.exclusive_marker_pairs(jg.datasets.markers("breast"), genes=genes)
jg.pp.nuclei(sdata, image_key="morphology")
rows, times = {}, {}


def run(name, fn, **kw):
    slug = re.sub(r"[^\w.-]+", "_", name)
    keys = {"key_added": f"{slug}_labels", "shapes_key": f"{slug}_shapes", "table_key": f"{slug}_table"}
    start = time.perf_counter()
    fn(sdata, image_key="morphology", points_key="transcripts", overwrite=True, **keys, **kw)
    times[name] = time.perf_counter() - start
    sdata["transcripts"] = sdata["transcripts"].drop(columns="jg_cell_id")
    rows[name] = jg.metrics.segmentation_report(
        sdata, pairs=pairs, labels_key=keys["key_added"], shapes_key=keys["shapes_key"], table_key=keys["table_key"]
    )


def matched_expansion(target, label):
    """Expansion distance that assigns the same fraction as a method (bisection on the distance)."""
    lo, hi = 1.0, 20.0
    for _ in range(8):
        mid = (lo + hi) / 2
        run("expand_nuclei matched", jg.seg.expand_nuclei, max_distance_um=mid)
        lo, hi = (mid, hi) if rows["expand_nuclei matched"]["fraction_assigned"] < target else (lo, mid)
    rows[f"expand_nuclei {mid:.1f}um (matched to {label})"] = rows.pop("expand_nuclei matched")
    times.pop("expand_nuclei matched")


run("expand_nuclei 8um", jg.seg.expand_nuclei, max_distance_um=8.0)
logs = {}
if "genesegnet" in args.methods:
    start = time.perf_counter()
    model = jg.seg.train_genesegnet(sdata, image_key="morphology", points_key="transcripts", steps=args.steps,
                                    seed=args.seed, progress=False)  # fmt: skip
    times["genesegnet training"] = time.perf_counter() - start
    logs["genesegnet"] = model.training_log["rounds"]
    run("genesegnet", jg.seg.genesegnet, model=model, progress=False)
    run("genesegnet vote centres", jg.seg.genesegnet, model=model, centres="votes", progress=False)
    matched_expansion(rows["genesegnet"]["fraction_assigned"], "genesegnet")
if "segjointgene" in args.methods:
    model_path = Path(tempfile.mkdtemp()) / "segjointgene_crop.pt"
    run("segjointgene", jg.seg.segjointgene, save_model=model_path, seed=args.seed, progress=False)
    logs["segjointgene"] = sdata["segjointgene_table"].uns["jointseg"]["segjointgene_labels"]["training_log"]
    top = sdata["segjointgene_table"].var.sort_values("jg_cid_rank").index[:20]
    run("segjointgene no fill (paper rule)", jg.seg.segjointgene, model=model_path, fill=False,
        progress=False)  # fmt: skip
    matched_expansion(rows["segjointgene"]["fraction_assigned"], "segjointgene")
    matched_expansion(rows["segjointgene no fill (paper rule)"]["fraction_assigned"], "segjointgene no fill")
if "sslcst" in args.methods:
    run("sslcst", jg.seg.sslcst, seed=args.seed, progress=False)
    logs["sslcst"] = sdata["sslcst_table"].uns["jointseg"]["sslcst_labels"]["training_log"]
    run("sslcst distance dropout 0.5", jg.seg.sslcst, distance_dropout=0.5, seed=args.seed, progress=False)
    matched_expansion(rows["sslcst"]["fraction_assigned"], "sslcst")

points = sdata["transcripts"][["xenium_cell_id", "feature_name"]].compute()
n_total = len(points)  # all transcripts, control probes included, as in our tables' fractions
assigned = points[points["xenium_cell_id"] > 0]
counts = pd.crosstab(assigned["xenium_cell_id"], assigned["feature_name"])
vendor_table = ad.AnnData(sparse.csr_matrix(counts.to_numpy()), var=pd.DataFrame(index=counts.columns.astype(str)))
rows["Xenium (vendor cell_id)"] = {
    "n_cells": len(counts),
    "fraction_assigned": counts.to_numpy().sum() / n_total,
    "median_transcripts_per_cell": float(np.median(counts.sum(1))),
    "mecr": jg.metrics.mecr(vendor_table, pairs, layer=None),
}

df = pd.DataFrame(rows).T
df["fraction_assigned"] *= 100
df = df.rename(columns={"fraction_assigned": "assigned %", "median_transcripts_per_cell": "median tx/cell"})
pd.set_option("display.width", 200)
print(f"\nReal Xenium breast crop, {n_total} transcripts, MECR over {len(pairs)} exclusive marker pairs")
print(df.round(3).to_string())
print("\nwall time (s):", {k: round(v, 1) for k, v in times.items()})
for r in logs.get("genesegnet", []):
    print(f"genesegnet round {r['round']}: loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, {r['n_cells']} cells, "
          f"foreground {r['foreground_fraction']:.1%}, IoU with previous labels {r['label_iou_with_previous']:.3f}, "
          f"{r['seconds']:.0f} s")  # fmt: skip
if "segjointgene" in logs:
    for r in logs["segjointgene"]["iterations"]:
        print(f"segjointgene iteration {r['iteration']}: loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, "
              f"{r['changed_fraction']:.2%} bins changed, top-50 Jaccard {r['top_genes_jaccard']:.2f}, "
              f"{r['cid_pairs']} CID pairs in {r['cid_seconds']:.0f} s, {r['seconds']:.0f} s")  # fmt: skip
    print("segjointgene converged:", logs["segjointgene"]["converged"])
    print("segjointgene top 20 genes by CID:", ", ".join(top))
if "sslcst" in logs:
    log = logs["sslcst"]
    print(f"sslcst training: {log['steps']} steps (early stop: {log['stopped_early']}), {log['n_train']} training and "
          f"{log['n_validation']} held-out samples, validation loss by step:",
          ", ".join(f"{h['step']}: {h['validation_loss']:.3f}" for h in log["history"]))  # fmt: skip
