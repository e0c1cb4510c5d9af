"""Transcript stage at scale: assignment + count matrix + per-transcript cell ids.

jointseg (``jg.tl.aggregate``: label lookup) against ``spatialdata.aggregate`` and sopa's
``count_transcripts`` (both on the polygons of the same labels), on the same synthetic labels
(Voronoi cells of ~40 px, 2048 px chunks) and uniformly placed transcripts of 300 genes. Polygons
are computed once, outside the timings.

Run: ``.venv/bin/python benchmarks/bench_transcript_stage.py [--sizes 4096:2000000 8192:20000000]``.
Prints one table: wall time, transcripts/s per core, and each reference's time over jointseg's in
the same run; then how the counts agree.
"""

import argparse
import os
import time

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import spatialdata
from scipy import ndimage
from spatialdata import SpatialData
from spatialdata.models import Labels2DModel, PointsModel

import jointseg as jg


def synthetic_slide(size: int, n_transcripts: int, seed: int = 0) -> SpatialData:
    """Labels of Voronoi cells capped at 25 px around jittered grid seeds, and uniform transcripts."""
    rng = np.random.default_rng(seed)
    gy, gx = np.mgrid[20:size:40, 20:size:40]
    seeds = np.clip(np.c_[gy.ravel(), gx.ravel()] + rng.integers(-8, 9, (gy.size, 2)), 0, size - 1)
    mark = np.zeros((size, size), np.uint32)
    mark[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1)
    dist, (iy, ix) = ndimage.distance_transform_edt(mark == 0, return_indices=True)
    labels = np.where(dist < 25, mark[iy, ix], 0).astype(np.uint32)
    genes = np.array([f"G{i:03d}" for i in range(300)])
    frame = pd.DataFrame(
        {
            "x": rng.uniform(0, size - 1, n_transcripts),
            "y": rng.uniform(0, size - 1, n_transcripts),
            "feature_name": pd.Categorical.from_codes(rng.integers(0, len(genes), n_transcripts), categories=genes),
        }
    )
    points = PointsModel.parse(
        dd.from_pandas(frame, npartitions=max(1, n_transcripts // 1_000_000)),
        coordinates={"x": "x", "y": "y"},
        feature_key="feature_name",
    )
    cells = Labels2DModel.parse(da.from_array(labels, chunks=2048), dims=("y", "x"))
    return SpatialData(labels={"cells": cells}, points={"transcripts": points})


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["4096:2000000", "8192:20000000"])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows, checks = [], []
    for spec in args.sizes:
        size, n = (int(v) for v in spec.split(":"))
        sdata = synthetic_slide(size, n)
        n_cells = int(sdata["cells"].max())
        ours, _ = timed(lambda sdata=sdata: jg.tl.aggregate(sdata, labels_key="cells", points_key="transcripts"))
        ids = sdata["transcripts"]["jg_cell_id"].compute().to_numpy()
        rows.append((f"{size} px, {n:,} tx, {n_cells:,} cells", "jointseg.tl.aggregate", ours, n, ours))
        polygons, shapes = timed(lambda sdata=sdata: jg.seg.labels_to_shapes(sdata["cells"]))
        sdata["cell_shapes"] = shapes
        print(f"(polygons for the references: {polygons:.1f} s, not counted)")
        ref, res = timed(
            lambda sdata=sdata: spatialdata.aggregate(
                values=sdata["transcripts"], by=sdata["cell_shapes"], value_key="feature_name", agg_func="count",
                target_coordinate_system="global",
            )
        )  # fmt: skip
        rows.append(("", "spatialdata.aggregate (polygons)", ref, n, ours))
        checks.append((size, "spatialdata.aggregate", int(np.asarray(res["table"].X.sum()))))
        try:
            from sopa.aggregation import count_transcripts
        except ImportError:
            print("sopa is not installed: pip install 'jointseg[explorer]'")
        else:
            ref, adata = timed(
                lambda sdata=sdata: count_transcripts(
                    sdata, gene_column="feature_name", shapes_key="cell_shapes", points_key="transcripts"
                )
            )
            rows.append(("", "sopa count_transcripts (polygons)", ref, n, ours))
            checks.append((size, "sopa", int(np.asarray(adata.X.sum()))))
        checks.append((size, "jointseg", int((ids > 0).sum())))
    print(f"\n{'input':<38} {'method':<36} {'wall s':>8} {'tx/s/core':>12} {'x jointseg':>11}")
    for name, method, t, n, ours in rows:
        print(f"{name:<38} {method:<36} {t:>8.2f} {n / t / cores:>12,.0f} {t / ours:>10.1f}x")
    print(f"({cores} cores; a ratio above 1x means the reference is slower)")
    for size in dict.fromkeys(c[0] for c in checks):
        print(f"transcripts counted at {size} px:", ", ".join(f"{m} {v:,}" for s, m, v in checks if s == size))


if __name__ == "__main__":
    main()
