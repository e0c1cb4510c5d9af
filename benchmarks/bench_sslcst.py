"""SSL-CST speed on the real Xenium crop: training and inference tokens/s, and wall times.

Run: ``.venv/bin/python benchmarks/bench_sslcst.py [--device cpu] [--steps 600]``. Trains SSL-CST
with its defaults on the full crop (``--steps`` at most; timed: samples, training, whole-slide
inference, outputs), then times inference alone with the saved model at stride 2 (the default) and
1 (every bin), and the network alone on batches of 4096 centre bins. Prints one table.
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
from jointseg.seg.sslcst.tokens import BinTable, nucleus_centres, token_geometry, token_settings, tokens_of

parser = argparse.ArgumentParser()
parser.add_argument("--device", default=None)
parser.add_argument("--steps", type=int, default=600)
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
path = Path(tempfile.mkdtemp()) / "sslcst.pt"
rows = []
start = time.perf_counter()
jg.seg.sslcst(sdata, save_model=path, steps=args.steps, device=args.device, progress=False)
total = time.perf_counter() - start
params = sdata["table"].uns["jointseg"]["cell_labels"]
log = params["training_log"]
rows.append({"stage": "whole method (train + segment), stride 2", "seconds": total, "rate": ""})
rows.append({
    "stage": f"training ({log['steps']} steps of {256} samples, early stop: {log['stopped_early']})",
    "seconds": log["training_seconds"],
    "rate": f"{log['training_tokens_per_second']:,.0f} tokens/s (forward + backward)",
})  # fmt: skip

shape = tuple(int(s) for s in sdata["morphology"].shape[-2:])
n_bins = int(np.prod([-(-s // (params["bin_um"] / 0.2125)) for s in shape]))
for stride in (2, 1):
    start = time.perf_counter()
    jg.seg.sslcst(sdata, model=path, stride=stride, device=args.device, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    evaluated = n_bins / stride**2
    rows.append({
        "stage": f"segment with the saved model, stride {stride} (~{evaluated:,.0f} centre bins)",
        "seconds": seconds,
        "rate": f"{evaluated / seconds:,.0f} bins/s end to end",
    })  # fmt: skip

# The network alone: tokens of real centre bins, batches of 4096.
model = SSLCSTModel.load(path, device=args.device or "cpu")
index = build_transcript_index(sdata, "transcripts", "morphology", shape=shape)
lut = gene_lookup(index, model.genes)
centres = nucleus_centres(sdata["nuclei"].data, model.bin_size)
table = BinTable.read(index, (200, 712, 200, 712), bin_size=model.bin_size, gene_lut=lut)
rng = np.random.default_rng(0)
yy, xx = rng.integers(220, 692, size=(2, 4096 * 4))
tokens = tokens_of(table, token_geometry(table, centres, token_settings(model)), centres, yy, xx, token_settings(model))
batches = [tokens.batch(table, np.arange(i, i + 4096)) for i in range(0, len(yy), 4096)]
model.predict(batches[0])  # warm-up
if model.device.startswith("cuda"):
    torch.cuda.synchronize()
start = time.perf_counter()
for batch in batches:
    model.predict(batch)
if model.device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
n_tokens = sum(int(b.valid.size) for b in batches)
rows.append({
    "stage": f"network forward only, {len(yy):,} centre bins ({n_tokens / len(yy):.0f} tokens each)",
    "seconds": seconds,
    "rate": f"{n_tokens / seconds:,.0f} tokens/s, {len(yy) / seconds:,.0f} bins/s",
})  # fmt: skip

pd.set_option("display.width", 200, "display.max_colwidth", 90)
print(f"\nSSL-CST on the real Xenium crop ({shape[0]} x {shape[1]} px, {n_bins:,} bins of {params['bin_um']:.3f} um), "
      f"device {model.device}, torch threads {torch.get_num_threads()}")  # fmt: skip
print(pd.DataFrame(rows).round(1).to_string(index=False))
