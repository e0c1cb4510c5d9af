"""SSL-CST speed on the real Xenium crop: training and inference tokens/s, and wall times.

Run: ``.venv/bin/python benchmarks/bench_sslcst.py [--device cpu] [--steps 600] [--model PATH]``.
Trains SSL-CST with its defaults on the full crop (``--steps`` at most; timed: samples, training,
whole-slide inference, outputs; skipped with ``--model``), then times segmentation with the saved
model (``refine=False``: the network's cells; the last row adds the default refinement):

- before 0.4: the full stride-2 lattice in network batches of 4096 centre bins;
- the full lattice in batches of 256 (the default since 0.4);
- the adaptive lattice (the default since 0.4: every 4th bin, then every 2nd where that disagrees);
- stride 1 (every bin, as the paper).

Each row gives the agreement of its cells with the first row's (mean best-match IoU, F1 at IoU
0.5). Then the network alone on batches of 4096 and 256 centre bins. Prints one table.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import jointseg as jg
from jointseg._core.genes import gene_lookup
from jointseg._core.transcripts import build_transcript_index
from jointseg.models import SSLCSTModel
from jointseg.seg.sslcst import infer
from jointseg.seg.sslcst.tokens import BinTable, nucleus_centres, token_geometry, token_settings, tokens_of

parser = argparse.ArgumentParser()
parser.add_argument("--device", default=None)
parser.add_argument("--steps", type=int, default=600)
parser.add_argument("--model", default=None, help="a saved SSL-CST model of the crop: skip training")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
rows = []
if args.model is None:
    path = Path(tempfile.mkdtemp()) / "sslcst.pt"
    start = time.perf_counter()
    jg.seg.sslcst(sdata, save_model=path, steps=args.steps, device=args.device, progress=False)
    total = time.perf_counter() - start
    log = sdata["table"].uns["jointseg"]["cell_labels"]["training_log"]
    rows.append({"stage": "whole method (train + segment + refine), defaults", "seconds": total, "rate": ""})
    rows.append({
        "stage": f"training ({log['steps']} steps of {256} samples, early stop: {log['stopped_early']})",
        "seconds": log["training_seconds"],
        "rate": f"{log['training_tokens_per_second']:,.0f} tokens/s (forward + backward)",
    })  # fmt: skip
else:
    path = Path(args.model)

shape = tuple(int(s) for s in sdata["morphology"].shape[-2:])
bin_size = SSLCSTModel.load(path).bin_size
n_bins = int(np.prod([-(-s // bin_size) for s in shape]))
runs = [
    ("before 0.4: full lattice, stride 2, batches of 4096", {"adaptive": False, "refine": False}, 4096),
    ("full lattice, stride 2, batches of 256", {"adaptive": False, "refine": False}, 256),
    ("adaptive lattice, stride 2 (default)", {"refine": False}, 256),
    ("full lattice, stride 1 (every bin, as the paper)", {"adaptive": False, "stride": 1, "refine": False}, 256),
    ("defaults (adaptive, stride 2, refined)", {}, 256),
]
reference = None
batch = infer._BATCH
for stage, kwargs, infer._BATCH in runs:
    start = time.perf_counter()
    jg.seg.sslcst(sdata, model=path, device=args.device, overwrite=True, progress=False, **kwargs)
    seconds = time.perf_counter() - start
    labels = np.asarray(sdata["cell_labels"].values)
    if reference is None:
        reference, before = labels, seconds
    same = jg.metrics.instance_scores(labels, reference)
    rows.append({
        "stage": stage, "seconds": seconds, "rate": f"{before / seconds:.2f}x the first row",
        "mean IoU": same["mean_iou"], "F1": same["f1"],
    })  # fmt: skip
infer._BATCH = batch
params = sdata["table"].uns["jointseg"]["cell_labels"]

# The network alone: tokens of real centre bins, in batches of 4096 and of 256.
model = SSLCSTModel.load(path, device=args.device or "cpu")
index = build_transcript_index(sdata, "transcripts", "morphology", shape=shape)
lut = gene_lookup(index, model.genes)
centres = nucleus_centres(sdata["nuclei"].data, model.bin_size)
table = BinTable.read(index, (200, 712, 200, 712), bin_size=model.bin_size, gene_lut=lut)
rng = np.random.default_rng(0)
yy, xx = rng.integers(220, 692, size=(2, 4096 * 4))
tokens = tokens_of(table, token_geometry(table, centres, token_settings(model)), centres, yy, xx, token_settings(model))
for size in (4096, 256):
    batches = [tokens.batch(table, np.arange(i, i + size)) for i in range(0, len(yy), size)]
    model.predict(batches[0])  # warm-up
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in batches:
        model.predict(b)
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    n_tokens = sum(int(b.valid.size) for b in batches)
    rows.append({
        "stage": f"network only, {len(yy):,} centre bins, batches of {size} ({n_tokens / len(yy):.0f} tokens each)",
        "seconds": seconds,
        "rate": f"{n_tokens / seconds:,.0f} tokens/s, {len(yy) / seconds:,.0f} bins/s",
    })  # fmt: skip

pd.set_option("display.width", 200, "display.max_colwidth", 90)
print(f"\nSSL-CST on the real Xenium crop ({shape[0]} x {shape[1]} px, {n_bins:,} bins of {params['bin_um']:.3f} um), "
      f"device {model.device}, torch threads {torch.get_num_threads()}")  # fmt: skip
print(pd.DataFrame(rows).round({"seconds": 1, "mean IoU": 4, "F1": 4}).fillna("").to_string(index=False))
