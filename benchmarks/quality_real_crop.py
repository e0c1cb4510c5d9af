"""Segmentation quality on the full real Xenium crop: GeneSegNet, SegJointGene and SSL-CST vs
nuclei expansion vs Xenium.

Run: ``.venv/bin/python benchmarks/quality_real_crop.py [--steps 150] [--methods genesegnet segjointgene sslcst]
[--refine-seeds 0 1 2] [--background-border 0.75]`` (fetches the crop once). ``expand_nuclei`` runs with 8 um, with its
estimated extents, and with ``refine=True`` (expression refinement, once per seed: the annealing
and the type clustering are random). Each network is trained once on the crop and applied with its
defaults (which refine the cells) and with ``refine=False`` (the paper's cells); GeneSegNet also
with centres from its own offset votes and with its foreground field as the refinement's prior,
SSL-CST also trained with cytoplasm samples tied by expression, SegJointGene also without the
foreground fill (the paper's growth rule alone) and with its CID scores weighing the refinement's
genes. Expansion is matched (bisection on the distance) to each method's assigned fraction. Prints
one table: cells, fraction of transcripts assigned, median transcripts per cell, MECR on the
exclusive marker pairs of the shipped breast
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
from jointseg._core.refinement import RefineParams

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=150)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--methods", nargs="+", default=["genesegnet", "segjointgene", "sslcst"])
parser.add_argument("--refine-seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument(
    "--background-border", type=float, default=RefineParams.background_border, help="refine option (jg.seg.refine)"
)
parser.add_argument(
    "--no-paper-variants",
    action="store_true",
    help="skip the refine=False, vote-centre and no-fill rows (their numbers do not change with refine)",
)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger("jointseg").setLevel(logging.WARNING)

sdata = jg.datasets.xenium_breast()
genes = list(sdata["transcripts"]["feature_name"].cat.categories)
pairs = jg.metrics.exclusive_marker_pairs(jg.datasets.markers("breast"), genes=genes)
jg.pp.nuclei(sdata, image_key="morphology")
rows, times = {}, {}
original_points = sdata["transcripts"]


def keys_of(name):
    """The element keys of a row's run."""
    slug = re.sub(r"[^\w.-]+", "_", name)
    return {"key_added": f"{slug}_labels", "shapes_key": f"{slug}_shapes", "table_key": f"{slug}_table"}


def uns_of(name):
    """What a row's run recorded in its table."""
    keys = keys_of(name)
    return sdata[keys["table_key"]].uns["jointseg"][keys["key_added"]]


def run(name, fn, **kw):
    keys = keys_of(name)
    start = time.perf_counter()
    fn(sdata, image_key="morphology", points_key="transcripts", overwrite=True, **keys, **kw)
    times[name] = time.perf_counter() - start
    sdata["transcripts"] = original_points  # not a drop: 40 lazy drops nest past Python's recursion limit
    rows[name] = jg.metrics.segmentation_report(
        sdata, pairs=pairs, labels_key=keys["key_added"], shapes_key=keys["shapes_key"], table_key=keys["table_key"]
    )
    if not name.endswith("matched"):  # each row as it comes, so a crash late in the run loses nothing
        r = rows[name]
        print(f"{name}: {r['fraction_assigned']:.2%} assigned, MECR {r['mecr']:.4f}, convexity "
              f"{r['median_convexity']:.3f}, {times[name]:.0f} s", flush=True)  # fmt: skip


def matched_expansion(target, label):
    """Expansion distance that assigns the same fraction as a method (bisection on the distance)."""
    lo, hi = 1.0, 20.0
    for _ in range(8):
        mid = (lo + hi) / 2
        run("expand_nuclei matched", jg.seg.expand_nuclei, max_distance_um=mid)
        lo, hi = (mid, hi) if rows["expand_nuclei matched"]["fraction_assigned"] < target else (lo, mid)
    matched = rows.pop("expand_nuclei matched")
    rows[f"expand_nuclei {mid:.1f}um (matched to {label})"] = matched
    times.pop("expand_nuclei matched")
    print(f"  matched to {label}: {mid:.1f} um, MECR {matched['mecr']:.4f}", flush=True)


REFINE = {"background_border": args.background_border}  # the refinement's defaults but this one
run("expand_nuclei 8um", jg.seg.expand_nuclei, max_distance_um=8.0)
run("expand_nuclei (estimated extents)", jg.seg.expand_nuclei)
for seed in args.refine_seeds:
    run(f"expand_nuclei + refine (seed {seed})", jg.seg.expand_nuclei, refine=REFINE, seed=seed)
    matched_expansion(rows[f"expand_nuclei + refine (seed {seed})"]["fraction_assigned"], f"refine seed {seed}")
logs = {}
if "genesegnet" in args.methods:
    start = time.perf_counter()
    model = jg.seg.train_genesegnet(sdata, image_key="morphology", points_key="transcripts", steps=args.steps,
                                    seed=args.seed, progress=False)  # fmt: skip
    times["genesegnet training"] = time.perf_counter() - start
    logs["genesegnet"] = model.training_log["rounds"]
    run("genesegnet (+ refine)", jg.seg.genesegnet, model=model, refine=REFINE, progress=False)
    matched_expansion(rows["genesegnet (+ refine)"]["fraction_assigned"], "genesegnet")
    if not args.no_paper_variants:
        run("genesegnet refine=False (paper)", jg.seg.genesegnet, model=model, refine=False, progress=False)
        run("genesegnet vote centres, refine=False", jg.seg.genesegnet, model=model, centres="votes", refine=False,
            progress=False)  # fmt: skip
        matched_expansion(rows["genesegnet refine=False (paper)"]["fraction_assigned"], "genesegnet refine=False")
        run("genesegnet + foreground prior (weight 1)", jg.seg.genesegnet, model=model,
            refine={**REFINE, "foreground_weight": 1.0}, progress=False)  # fmt: skip
        matched_expansion(rows["genesegnet + foreground prior (weight 1)"]["fraction_assigned"], "genesegnet prior")
if "segjointgene" in args.methods:
    model_path = Path(tempfile.mkdtemp()) / "segjointgene_crop.pt"
    run("segjointgene (+ refine)", jg.seg.segjointgene, save_model=model_path, seed=args.seed, refine=REFINE,
        progress=False)  # fmt: skip
    logs["segjointgene"] = uns_of("segjointgene (+ refine)")["training_log"]
    top = sdata[keys_of("segjointgene (+ refine)")["table_key"]].var.sort_values("jg_cid_rank").index[:20]
    matched_expansion(rows["segjointgene (+ refine)"]["fraction_assigned"], "segjointgene")
    if not args.no_paper_variants:
        run("segjointgene refine=False", jg.seg.segjointgene, model=model_path, refine=False, progress=False)
        run("segjointgene no fill, refine=False (paper rule)", jg.seg.segjointgene, model=model_path, fill=False,
            refine=False, progress=False)  # fmt: skip
        run("segjointgene + CID-weighted refine", jg.seg.segjointgene, model=model_path, refine=REFINE,
            cid_weights=True, progress=False)  # fmt: skip
        matched_expansion(rows["segjointgene + CID-weighted refine"]["fraction_assigned"], "segjointgene CID-weighted")
        matched_expansion(rows["segjointgene refine=False"]["fraction_assigned"], "segjointgene refine=False")
if "sslcst" in args.methods:
    model_path = Path(tempfile.mkdtemp()) / "sslcst_crop.pt"
    run("sslcst (+ refine)", jg.seg.sslcst, save_model=model_path, seed=args.seed, refine=REFINE, progress=False)
    logs["sslcst"] = uns_of("sslcst (+ refine)")["training_log"]
    matched_expansion(rows["sslcst (+ refine)"]["fraction_assigned"], "sslcst")
    if not args.no_paper_variants:
        run("sslcst refine=False (paper)", jg.seg.sslcst, model=model_path, refine=False, progress=False)
        matched_expansion(rows["sslcst refine=False (paper)"]["fraction_assigned"], "sslcst refine=False")
        run("sslcst + cytoplasm samples (+ refine)", jg.seg.sslcst, seed=args.seed, refine=REFINE, progress=False,
            config=jg.seg.SSLCSTConfig(cytoplasm_margin=2.0))  # fmt: skip
        matched_expansion(rows["sslcst + cytoplasm samples (+ refine)"]["fraction_assigned"], "sslcst cytoplasm")

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
