"""Transcript stage speed: jointseg's aggregation vs spatialdata.aggregate on the same labels and points.

Run: ``.venv/bin/python benchmarks/bench_aggregate.py`` (uses the full real crop). Prints a table
of wall times, transcripts/s per core, and the speed ratio measured in the same run.
"""

import os
import time

import numpy as np
import spatialdata

import jointseg as jg

sdata = jg.datasets.xenium_breast(subset="full")
jg.pp.nuclei(sdata, image_key="morphology")
jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
n = 186_146
cores = len(os.sched_getaffinity(0))
rows = []

start = time.perf_counter()
jg.tl.aggregate(sdata, labels_key="cell_labels", points_key="transcripts", table_key="t2", points_cell_id_key="c2")
ours = time.perf_counter() - start
rows.append(("jointseg.tl.aggregate (labels lookup)", ours))

shapes = jg.seg.labels_to_shapes(sdata["cell_labels"])
sdata["shapes_for_bench"] = shapes
start = time.perf_counter()
res = spatialdata.aggregate(values=sdata["transcripts"], by=sdata["shapes_for_bench"], value_key="feature_name",
                            agg_func="count", target_coordinate_system="global")  # fmt: skip
ref = time.perf_counter() - start
rows.append(("spatialdata.aggregate (polygons)", ref))
ref_total = int(np.asarray(res["table"].X.sum()))

print(f"{'method':<40} {'wall s':>8} {'transcripts/s/core':>20}")
for name, t in rows:
    print(f"{name:<40} {t:>8.2f} {n / t / cores:>20,.0f}")
print(
    f"speed ratio (spatialdata / jointseg): {ref / ours:.1f}x on {cores} cores; "
    f"counts jointseg {int(sdata['t2'].X.sum())} vs spatialdata {ref_total}"
)
