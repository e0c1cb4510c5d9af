"""Image-only nuclei classifier trained from pseudolabels, evaluated on a held-out region of the
real Xenium crop.

Run: ``.venv/bin/python benchmarks/image_classifier_real_crop.py [--steps 800] [--seeds 0 1 2]``. Cells: expand_nuclei
(8 um) on the classical nuclei; pseudolabels with markers="breast". The classifier trains on the
left two thirds of the crop (x < 1200 px) and predicts nuclei and classes from the stain alone on
the right third. Predicted nuclei are matched to the classical nuclei (IoU >= 0.5); each match is
scored against the pseudolabel of the cell of that nucleus (Unknown excluded). Baseline on the
same cells: marker scoring (per class, the mean log-normalised expression of its breast markers;
argmax), against the same pseudolabels. Prints detection and classification tables per seed,
then, with several ``--seeds``, each seed's detection precision / recall, accuracy and macro-F1
with their mean and standard deviation: one training run moves these by several points.
"""

import argparse
import logging
import time

import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import accuracy_score, classification_report, f1_score

import jointseg as jg

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=800)
parser.add_argument("--split", type=int, default=1200)
parser.add_argument("--seeds", type=int, nargs="+", default=[0])
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
jg.tl.pseudolabels(sdata, markers="breast")
table = sdata["table"]
h, w = sdata["morphology"].shape[-2:]
train_region, test_region = (0, h, 0, args.split), (0, h, args.split, w)


def evaluate(seed: int) -> dict:
    """Train at ``seed``, print the detection and classification tables, return the summary."""
    start = time.perf_counter()
    model = jg.tl.train_image_classifier(sdata, region=train_region, steps=args.steps, seed=seed, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted, frame = jg.tl.predict_image_classes(sdata, model, region=test_region)
    predict_s = time.perf_counter() - start

    truth = sdata["nuclei"].values[:, args.split :]
    matches = jg.metrics.match_instances(predicted, truth)
    matches = matches[matches["iou"] >= 0.5]
    n_true, n_pred = len(np.unique(truth[truth > 0])), int(frame.shape[0])
    detection = {"classical nuclei (held out)": n_true, "predicted nuclei": n_pred,
                 "matched (IoU >= 0.5)": len(matches), "precision": len(matches) / max(n_pred, 1),
                 "recall": len(matches) / max(n_true, 1),
                 "mean IoU of matches": matches["iou"].mean()}  # fmt: skip
    type_of_nucleus = table.obs.set_index("nucleus_id")["cell_type"].astype(str)
    pred_class = frame.set_index("cell_id")["class"].astype(str)
    pairs = pd.DataFrame({"pred": pred_class.reindex(matches["pred"]).to_numpy(),
                          "true": type_of_nucleus.reindex(matches["true"]).to_numpy()}).dropna()  # fmt: skip
    pairs = pairs[pairs["true"] != "Unknown"]

    # Marker-scoring baseline on the held-out cells, from the same transcripts the pseudolabels used.
    held_out = table.obs["nucleus_id"].isin(np.unique(truth[truth > 0])) & (table.obs["cell_type"] != "Unknown")
    held = table[held_out].copy()
    held.X = held.layers["counts"].copy()
    sc.pp.normalize_total(held)
    sc.pp.log1p(held)
    db = jg.tl.marker_table("breast")
    classes = [c for c in model.classes[1:] if c in set(db["coarse_class"])]
    scores = np.stack([np.asarray(held[:, sorted(set(db.loc[db.coarse_class == c, "gene"]) & set(held.var_names))].X
                                  .mean(axis=1)).ravel() for c in classes], axis=1)  # fmt: skip
    baseline = np.asarray(classes)[scores.argmax(axis=1)]
    labels = sorted(set(pairs["true"]) | set(held.obs["cell_type"].astype(str)))
    rows = {
        "image classifier (stain only), matched nuclei": {
            "cells": len(pairs), "accuracy": accuracy_score(pairs["true"], pairs["pred"]),
            "macro-F1": f1_score(pairs["true"], pairs["pred"], labels=labels, average="macro", zero_division=0)},
        "marker scoring (transcripts), held-out cells": {
            "cells": len(held), "accuracy": accuracy_score(held.obs["cell_type"].astype(str), baseline),
            "macro-F1": f1_score(held.obs["cell_type"].astype(str), baseline, labels=labels, average="macro",
                                 zero_division=0)},
        "majority class, matched nuclei": {
            "cells": len(pairs), "accuracy": (pairs["true"] == pairs["true"].mode()[0]).mean(),
            "macro-F1": f1_score(pairs["true"], [pairs["true"].mode()[0]] * len(pairs), labels=labels, average="macro",
                                 zero_division=0)},
    }  # fmt: skip
    print(
        f"\nSeed {seed}. Held-out region x >= {args.split} px; training {train_s:.0f} s ({args.steps} steps), "
        f"prediction {predict_s:.1f} s"
    )
    print("nuclei detection:", {k: round(v, 3) if isinstance(v, float) else v for k, v in detection.items()})
    print("pseudolabel classes of the matched held-out nuclei:", pairs["true"].value_counts().to_dict())
    print(pd.DataFrame(rows).T.round(3).to_string())
    print("\nper class, image classifier on the matched held-out nuclei:")
    print(classification_report(pairs["true"], pairs["pred"], labels=labels, digits=3, zero_division=0))
    print("classes predicted:", sorted(set(pairs["pred"])), "of", model.classes[1:])
    print("\nconfusion (rows: pseudolabel, columns: image classifier):")
    print(pd.crosstab(pairs["true"], pairs["pred"]).to_string())
    return {
        "seed": seed, "detection precision": detection["precision"], "detection recall": detection["recall"],
        "accuracy": rows["image classifier (stain only), matched nuclei"]["accuracy"],
        "macro-F1": rows["image classifier (stain only), matched nuclei"]["macro-F1"],
        "classes predicted": f"{len(set(pairs['pred']))} of {len(set(pairs['true']))} present",
    }  # fmt: skip


summary = pd.DataFrame([evaluate(seed) for seed in args.seeds]).set_index("seed")
if len(summary) > 1:
    numbers = summary.drop(columns="classes predicted")
    summary.loc["mean"] = [*numbers.mean(), ""]
    summary.loc["std"] = [*numbers.std(), ""]
print("\nimage classifier on the held-out region, per seed:")
print(summary.round(3).to_string())
