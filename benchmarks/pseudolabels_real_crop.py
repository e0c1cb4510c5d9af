"""Pseudolabels on the real Xenium crop: coarse lineages, their marker evidence, squidpy enrichment.

Run: ``.venv/bin/python benchmarks/pseudolabels_real_crop.py [--resolution 4.0] [--out docs/_static]``.
Segments the crop with ``expand_nuclei`` (8 um), runs ``jg.tl.pseudolabels(markers="breast")``, prints
per cluster its label, votes, top DEGs and the neoplastic test (cancer genes among the top 20 DEGs,
enrichment q-value), the class counts, and the squidpy neighbourhood
enrichment z-scores between classes; writes ``cell_types.png`` and ``marker_dotplot.png``.
"""

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import squidpy as sq

import jointseg as jg

parser = argparse.ArgumentParser()
parser.add_argument("--resolution", type=float, default=4.0)
parser.add_argument("--out", default="docs/_static")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
jg.tl.pseudolabels(sdata, markers="breast", resolution=args.resolution)
table = sdata["table"]
rows = []
for cluster, info in table.uns["jointseg"]["pseudolabels"]["clusters"].items():
    votes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(info["votes"].items(), key=lambda kv: -kv[1]))
    top = " ".join(info["top_genes"][:6])
    rows.append({"cluster": cluster, "cells": info["n_cells"], "label": info["label"], "votes": votes,
                 "top DEGs": top, "cancer genes in top 20": " ".join(info["cancer_hits"]),
                 "q": f"{info['cancer_q']:.2g}"})  # fmt: skip
pd.set_option("display.width", 250)
pd.set_option("display.max_colwidth", 50)
print(pd.DataFrame(rows).to_string(index=False))
print("\ncells per class:", table.obs["cell_type"].value_counts().to_dict())
sq.gr.spatial_neighbors_knn(table, n_neighs=6)
sq.gr.nhood_enrichment(table, cluster_key="cell_type", n_perms=500, seed=0, show_progress_bar=False)
z = pd.DataFrame(table.uns["cell_type_nhood_enrichment"]["zscore"], index=table.obs["cell_type"].cat.categories,
                 columns=table.obs["cell_type"].cat.categories)  # fmt: skip
print("\nsquidpy nhood_enrichment z-scores (kNN, k=6, 500 permutations):")
print(z.round(1).to_string())
ax = jg.pl.cell_types(sdata, image_key="morphology")
ax.set_title(f"pseudolabels (markers='breast', resolution {args.resolution:g}) on expand_nuclei cells")
ax.figure.tight_layout()
ax.figure.savefig(out / "cell_types.png", dpi=100)
axes = jg.pl.marker_dotplot(sdata)
plt.gcf().savefig(out / "marker_dotplot.png", dpi=100, bbox_inches="tight")
print(f"\nwrote {out / 'cell_types.png'} and {out / 'marker_dotplot.png'}")
