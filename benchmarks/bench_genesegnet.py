"""GeneSegNet inference speed on a fixed synthetic 4096 x 4096 slide (CPU or GPU).

Run: ``.venv/bin/python benchmarks/bench_genesegnet.py [--size 4096] [--device cpu]``. Prints Mpx/s
per core for (a) the network forward alone (non-overlapping 256 px windows, inputs ready), (b) the
fields stage (RNA map + overlapping windows + averaging, per 2048 px block), (c) instances from the
stitched fields (post-processing), and (d) end-to-end ``jg.seg.genesegnet`` with a trained model
(fields + instances + polygons + count table). The model is trained briefly on a small synthetic
slide first (its weights do not change the network's cost; they make the fields realistic).
"""

import argparse
import os
import time

import dask.array as da
import numpy as np

import jointseg as jg
from jointseg._core.tiling import BlockGrid, segment_blockwise
from jointseg._core.transcripts import build_transcript_index
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import image_2d, labels_2d
from jointseg.seg.genesegnet.infer import _fields_task, _instances_block, instance_params, slide_inputs

parser = argparse.ArgumentParser()
parser.add_argument("--size", type=int, default=4096)
parser.add_argument("--device", default=None)
args = parser.parse_args()
n = args.size
cores = len(os.sched_getaffinity(0))
device = jg._core.utils.select_device(args.device)

train = jg.datasets.synthetic(shape=(512, 512), n_cells=100, seed=0)
jg.pp.nuclei(train, image_key="morphology")
model = jg.seg.train_genesegnet(train, steps=40, max_rounds=1, device=device, progress=False)

slide = jg.datasets.synthetic(shape=(n, n), n_cells=n * n // 2600, seed=1)
jg.pp.nuclei(slide, image_key="morphology")
mpx = n * n / 1e6
stain = image_2d(slide, "morphology").data
px = pixel_size_um(slide, "morphology")
index = build_transcript_index(slide, "transcripts", "morphology", shape=(n, n), block_size=2048)
inputs = slide_inputs(stain, index, model.sigma_um / px)
kw = instance_params(px, 20.0)
halo = int(np.ceil(30.0 / px))
rows = []

x = inputs.read(stain.compute(), (0, 0), (0, n, 0, n))
windows = x.reshape(2, n // 256, 256, n // 256, 256).transpose(1, 3, 0, 2, 4).reshape(-1, 2, 256, 256)
model.predict(windows[:8])  # warm-up
start = time.perf_counter()
for i in range(0, len(windows), 8):
    model.predict(windows[i : i + 8])
t_net = time.perf_counter() - start
rows.append(("(a) network forward only", t_net))

stain_np = stain.compute()
out = np.zeros((3, n, n), np.float32)
start = time.perf_counter()
for blk in BlockGrid((n, n), 2048, 0):  # the same per-block task as jg.seg.genesegnet, run in sequence
    out[(slice(None), *blk.core_slices)] = _fields_task(stain_np, (0, 0), inputs, blk.core, (n, n), model, 256, 224)
t_fields = time.perf_counter() - start
rows.append(("(b) fields: RNA map + windows + averaging", t_fields))

nuclei = labels_2d(slide, "nuclei").data.astype(np.float64)[None].rechunk((1, 2048, 2048))
stack = da.concatenate([da.from_array(out.astype(np.float64), chunks=(3, 2048, 2048)), nuclei], axis=0)
start = time.perf_counter()
cells = segment_blockwise(stack, _instances_block, block_size=2048, halo=halo, **kw).compute()
t_post = time.perf_counter() - start
rows.append(("(c) instances from fields (post-processing)", t_post))

start = time.perf_counter()
jg.seg.genesegnet(slide, image_key="morphology", points_key="transcripts", model=model, device=device, progress=False)
t_e2e = time.perf_counter() - start
rows.append(("(d) end-to-end jg.seg.genesegnet", t_e2e))

n_cells = len(np.unique(cells)) - 1
print(f"\nGeneSegNet inference, synthetic {n}x{n} ({mpx:.1f} Mpx, {n_cells} cells), {device}, {cores} cores")
print(f"{'stage':<48} {'wall s':>8} {'Mpx/s':>8} {'Mpx/s/core':>11}")
for name, t in rows:
    print(f"{name:<48} {t:>8.2f} {mpx / t:>8.3f} {mpx / t / cores:>11.3f}")
print(f"post-processing / network time: {t_post / t_net:.1%}; post-processing / fields stage: {t_post / t_fields:.1%}")
