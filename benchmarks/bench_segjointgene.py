"""SegJointGene speed: the CID step with both estimators, on the real crop and on synthetic 300- and
5,000-gene panels, and the whole method's training time and gene ranking.

Run: ``.venv/bin/python benchmarks/bench_segjointgene.py [--device cpu] [--parts crop,windows,panels]``
(2-core CPU: ~20 min for ``crop``, ~6 for ``windows``, ~15 for ``panels``). Run it alone.

- ``crop``: the whole method on the real crop with ``cid_estimator="sampled"`` (the paper) and
  ``"expected"`` (the default), each with seeds 0 and 1: wall time, training time, CID time and
  pairs, and the top-50 Jaccard of the final gene rankings between every two runs (the two sampled
  seeds give the method's own run-to-run agreement); then the expected estimator on 24 CID windows
  instead of 6.
- ``windows``: CID alone on ``--windows`` random 32 x 32-bin windows of the crop, all types, one
  trained network: sampled (seeds 0 and 1) and expected, with pairs/s and the top-50 Jaccard and
  Pearson r of the window-aggregated scores against sampled seed 0.
- ``panels``: a synthetic tumour tissue (~1,300 cells, ~460,000 transcripts) with a 300- and a
  5,000-gene panel (8 types of 35 marker genes each; the other genes share half of every cell's
  transcripts): the whole method with the default estimator, then CID alone per window with each
  estimator (sampled on one window only: at 5,000 genes it takes minutes per window).
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import jointseg as jg
from jointseg._core.genes import gene_lookup
from jointseg._core.transcripts import build_transcript_index
from jointseg.models import SegJointGeneModel, bin_transcripts
from jointseg.seg.segjointgene.cid import CIDParams, cid_tile
from jointseg.seg.segjointgene.train import gene_ranking, jaccard

parser = argparse.ArgumentParser()
parser.add_argument("--device", default=None)
parser.add_argument("--windows", type=int, default=3)
parser.add_argument("--parts", default="crop,windows,panels")
args = parser.parse_args()
parts = args.parts.split(",")
logging.basicConfig(level=logging.WARNING)
workdir = Path(tempfile.mkdtemp())


def whole_method(sdata, name: str, **config) -> dict:
    """Train and segment with SegJointGene; its times, CID cost and top-50 genes."""
    start = time.perf_counter()
    jg.seg.segjointgene(sdata, save_model=workdir / f"{name}.pt", device=args.device, progress=False, overwrite=True,
                        seed=config.pop("seed", 0), config=jg.seg.SegJointGeneConfig(**config))  # fmt: skip
    total = time.perf_counter() - start
    params = sdata["table"].uns["jointseg"]["cell_labels"]
    iterations = params["training_log"]["iterations"]
    cid_s = sum(e["cid_seconds"] for e in iterations)
    pairs = sum(e["cid_pairs"] for e in iterations)
    top = sdata["table"].var.sort_values("jg_cid_rank").index[:50]
    return {"run": name, "wall s": total, "training s": params["training_seconds"], "CID s": cid_s,
            "CID pairs": pairs, "pairs/s": pairs / cid_s, "genes": len(params["cid_genes"]),
            "top50": set(top)}  # fmt: skip


def windows_of(sdata, model: SegJointGeneModel, n: int, seed: int = 0) -> list:
    """Binned transcripts and scored genes of ``n`` random 32 x 32-bin windows."""
    shape = tuple(int(s) for s in sdata["morphology"].shape[-2:])
    index = build_transcript_index(sdata, "transcripts", "morphology", shape=shape, block_size=512)
    lut = gene_lookup(index, model.genes)
    rng = np.random.default_rng(seed)
    grid = (shape[0] // model.bin_size, shape[1] // model.bin_size)
    out = []
    for _ in range(n):
        y, x = int(rng.integers(grid[0] - 32)), int(rng.integers(grid[1] - 32))
        counts = bin_transcripts(index, (y, y + 32, x, x + 32), bin_size=model.bin_size, gene_lut=lut)
        genes = np.flatnonzero(np.bincount(counts.gene, weights=counts.count, minlength=len(model.genes)) >= 2)
        out.append((counts, genes))
    return out


def cid_alone(model: SegJointGeneModel, windows: list, params: CIDParams, seed: int = 0):
    """Support-weighted CID ``(types, genes)`` over the windows, seconds and pairs."""
    types = np.arange(1, len(model.types) + 1)
    total = np.zeros((len(types), len(model.genes)))
    weight = np.zeros_like(total)
    seconds, pairs = 0.0, 0
    for i, (counts, genes) in enumerate(windows):
        start = time.perf_counter()
        scores, support = cid_tile(model.network, counts, genes, types, params=params, seed=seed + i)
        seconds += time.perf_counter() - start
        pairs += scores.size
        rows, cols = np.ix_(types - 1, genes)
        measured = np.isfinite(scores)
        total[rows, cols] += np.where(measured, scores * support, 0)
        weight[rows, cols] += np.where(measured, support, 0)
    with np.errstate(invalid="ignore"):
        return np.where(weight > 0, total / weight, np.nan), seconds, pairs


def agreement(cid: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Top-50 Jaccard of the gene rankings and Pearson r of the scores measured in both."""
    both = np.isfinite(cid) & np.isfinite(reference)
    return jaccard(gene_ranking(cid)[:50], gene_ranking(reference)[:50]), np.corrcoef(cid[both], reference[both])[0, 1]


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(pd.DataFrame(rows).set_index(next(iter(rows[0]))).round(3).to_string())


crop = jg.datasets.xenium_breast()
jg.pp.nuclei(crop, image_key="morphology")

if "crop" in parts:
    runs = [whole_method(crop, f"{est} seed {seed}", cid_estimator=est, seed=seed)
            for est in ("sampled", "expected") for seed in (0, 1)]  # fmt: skip
    runs += [whole_method(crop, f"expected, 24 windows, seed {seed}", cid_windows=24, seed=seed) for seed in (0, 1)]
    print_table("Whole method on the real crop (2,400 x 1,800 px)", [{k: v for k, v in r.items() if k != "top50"}
                                                                      for r in runs])  # fmt: skip
    names = [r["run"] for r in runs]
    matrix = pd.DataFrame([[len(a["top50"] & b["top50"]) / len(a["top50"] | b["top50"]) for b in runs]
                           for a in runs], index=names, columns=names)  # fmt: skip
    print("\nTop-50 Jaccard of the final gene rankings\n" + matrix.round(2).to_string())

if "windows" in parts:
    path = workdir / "sampled seed 0.pt"  # trained by the crop part when it ran
    if not path.exists():
        jg.seg.segjointgene(crop, save_model=path, device=args.device, progress=False, overwrite=True,
                            config=jg.seg.SegJointGeneConfig(cid_estimator="sampled"))  # fmt: skip
    model = SegJointGeneModel.load(path, device=args.device or "cpu")
    windows = windows_of(crop, model, args.windows)
    reference, ref_s, pairs = cid_alone(model, windows, CIDParams(estimator="sampled"))
    rows = [{"CID alone on the crop": "sampled, seed 0 (reference)", "s": ref_s, "pairs": pairs,
             "pairs/s": pairs / ref_s}]  # fmt: skip
    for label, params, seed in [("sampled, seed 1000", CIDParams(estimator="sampled"), 1000),
                                ("expected, 16 probes", CIDParams(), 0),
                                ("expected, 16 probes, seed 1000", CIDParams(), 1000),
                                ("expected, 4 probes", CIDParams(probes=4), 0)]:  # fmt: skip
        cid, seconds, pairs = cid_alone(model, windows, params, seed)
        j, r = agreement(cid, reference)
        rows.append({"CID alone on the crop": label, "s": seconds, "pairs": pairs, "pairs/s": pairs / seconds,
                     "speed-up": ref_s / seconds, "top-50 Jaccard": j, "Pearson r": r})  # fmt: skip
    print_table(f"CID alone: {args.windows} windows of 32 x 32 bins, all {len(model.types)} types, "
                f"{len(model.genes)} genes", rows)  # fmt: skip

if "panels" in parts:
    rows = []
    for n_genes in (300, 5000):
        # 8 types with 35 marker genes each; the rest of the panel shares half of every cell's transcripts.
        sdata = jg.datasets.synthetic(shape=(2048, 2048), n_cells=2000, regime="tumour", n_cell_types=8,
                                      genes_per_type=35, n_noise_genes=n_genes - 8 * 35, specific_fraction=0.5,
                                      transcripts_per_um2=3.0, seed=0)  # fmt: skip
        jg.pp.nuclei(sdata, image_key="morphology")
        run = whole_method(sdata, f"{n_genes}-gene panel")
        model = SegJointGeneModel.load(workdir / f"{n_genes}-gene panel.pt", device=args.device or "cpu")
        windows = windows_of(sdata, model, args.windows)
        _, expected_s, expected_pairs = cid_alone(model, windows, CIDParams())
        _, sampled_s, sampled_pairs = cid_alone(model, windows[:1], CIDParams(estimator="sampled"))
        rows.append({
            "panel": f"{n_genes} genes ({run['genes']} kept)", "transcripts": len(sdata["transcripts"]),
            "whole method s": run["wall s"], "training s": run["training s"], "CID s in training": run["CID s"],
            "CID pairs in training": run["CID pairs"], "expected s/window": expected_s / len(windows),
            "expected pairs/window": expected_pairs / len(windows), "sampled s/window": sampled_s,
            "sampled pairs/window": sampled_pairs,
        })  # fmt: skip
    print_table("Synthetic tumour tissue, 2,048 x 2,048 px, 8 types", rows)
