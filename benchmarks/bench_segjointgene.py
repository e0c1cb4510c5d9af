"""SegJointGene speed on the real Xenium crop: the CID step (pairs/s) and the whole method.

Run: ``.venv/bin/python benchmarks/bench_segjointgene.py [--device cpu]``. Trains SegJointGene with
its defaults on the full crop (timed: Leiden, joint refinement, whole-slide inference, outputs),
then times the CID step alone on 32 x 32-bin windows of the crop with the trained network, for 1
and 2 Monte-Carlo samples, and whole-slide inference with the saved model. Prints one table.
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

parser = argparse.ArgumentParser()
parser.add_argument("--device", default=None)
parser.add_argument("--windows", type=int, default=6)
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
rows = []
path = Path(tempfile.mkdtemp()) / "sjg.pt"
start = time.perf_counter()
jg.seg.segjointgene(sdata, save_model=path, device=args.device, progress=False)
total = time.perf_counter() - start
params = sdata["table"].uns["jointseg"]["cell_labels"]
log = params["training_log"]
cid_s = sum(e["cid_seconds"] for e in log["iterations"])
cid_pairs = sum(e["cid_pairs"] for e in log["iterations"])
rows.append({"stage": "whole method (training + inference + outputs)", "wall s": total})
rows.append({"stage": "  of which training (index, Leiden, joint refinement)", "wall s": params["training_seconds"]})
rows.append({"stage": "  of which CID inside refinement", "wall s": cid_s, "pairs": cid_pairs,
             "pairs/s": cid_pairs / cid_s})  # fmt: skip

model = SegJointGeneModel.load(path, device=args.device or "cpu")
start = time.perf_counter()
jg.seg.segjointgene(sdata, model=model, key_added="again", shapes_key="again_shapes", table_key="again_table",
                    device=args.device, overwrite=True, progress=False)  # fmt: skip
rows.append({"stage": "inference with a saved model (Leiden + slide + outputs)", "wall s": time.perf_counter() - start})

shape = tuple(int(s) for s in sdata["morphology"].shape[-2:])
index = build_transcript_index(sdata, "transcripts", "morphology", shape=shape, block_size=512)
lut = gene_lookup(index, model.genes)
rng = np.random.default_rng(0)
grid = (shape[0] // model.bin_size, shape[1] // model.bin_size)
windows = [(int(rng.integers(grid[0] - 32)), int(rng.integers(grid[1] - 32))) for _ in range(args.windows)]
types = np.arange(1, len(model.types) + 1)
for samples in (1, 2):
    pairs, seconds = 0, 0.0
    for y, x in windows:
        counts = bin_transcripts(index, (y, y + 32, x, x + 32), bin_size=model.bin_size, gene_lut=lut)
        genes = np.flatnonzero(np.bincount(counts.gene, weights=counts.count, minlength=len(model.genes)) >= 2)
        start = time.perf_counter()
        cid_tile(model.network, counts, genes, types, params=CIDParams(samples=samples))
        seconds += time.perf_counter() - start
        pairs += len(genes) * len(types)
    rows.append({"stage": f"CID alone, all {len(types)} types, {samples} sample(s)", "wall s": seconds, "pairs": pairs,
                 "pairs/s": pairs / seconds})  # fmt: skip

df = pd.DataFrame(rows).set_index("stage")
print(f"\nSegJointGene on the real crop ({len(index.x)} transcripts, {len(model.genes)} genes, {len(model.types)} "
      f"types), device {params['device']}, CID: 20 steps, 32 x 32 bins of {params['bin_um']:.2f} um")  # fmt: skip
print(df.round(2).to_string())
