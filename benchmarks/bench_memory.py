"""Peak memory and wall time of the full pipeline on synthetic slides of 3 sizes, written lazily to disk.

Each size runs in a fresh process on a backed SpatialData (``spatialdata.read_zarr``): nuclei,
then ``expand_nuclei`` (RNA density map, cells, polygons, table, per-transcript ids). New
elements go straight into the store with ``write_element``. The bar is a peak RSS of at most
2 GB + 50 bytes per transcript.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--sizes 4096 8192 16384] [--workdir /tmp/jg_bench]``.
Prints one row per size, then how time and memory grow with the number of pixels.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

PER_CELL = 170  # transcripts per nucleus: ~20 M on the 16k x 16k slide


def child(path: str) -> None:
    import spatialdata

    import jointseg as jg

    sdata = spatialdata.read_zarr(path)
    times = {}
    start = time.perf_counter()
    jg.pp.nuclei(sdata, image_key="morphology", overwrite=True)
    times["nuclei_s"] = time.perf_counter() - start
    start = time.perf_counter()
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", overwrite=True)
    times["cells_s"] = time.perf_counter() - start
    table = sdata["table"]
    info = table.uns["jointseg"]["table"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    on_disk = sorted(p.split("/")[-1] for p in sdata.elements_paths_on_disk())
    print(json.dumps({**times, "peak_rss": peak, "n_cells": table.n_obs, "n_tx": info["n_transcripts_total"],
                      "assigned": info["n_transcripts_assigned"], "on_disk": on_disk}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[4096, 8192, 16384])
    parser.add_argument("--workdir", default="/tmp/jg_bench")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from _slide import write_slide

    rows = []
    for size in args.sizes:
        path = Path(args.workdir) / f"slide_{size}.zarr"
        start = time.perf_counter()
        n_tx = write_slide(path, size, per_cell=PER_CELL)
        written = time.perf_counter() - start
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.update(size=size, wall_s=wall, write_s=written, bar=2e9 + 50 * n_tx)
        rows.append(res)
        print(f"{size}: {res}", flush=True)

    print(f"\n{'slide px':>12} {'transcripts':>12} {'cells':>8} {'write s':>8} {'nuclei s':>9} {'cells s':>8} "
          f"{'total s':>8} {'peak RSS GB':>12} {'bar GB':>7} {'B/tx over 2GB':>14}")  # fmt: skip
    for r in rows:
        over = (r["peak_rss"] - 2e9) / r["n_tx"]
        print(f"{r['size']:>6}^2 {r['n_tx']:>14,} {r['n_cells']:>8,} {r['write_s']:>8.1f} {r['nuclei_s']:>9.1f} "
              f"{r['cells_s']:>8.1f} {r['wall_s']:>8.1f} {r['peak_rss'] / 1e9:>12.2f} {r['bar'] / 1e9:>7.2f} "
              f"{over:>14.1f}")  # fmt: skip
    if len(rows) > 1:
        px = np.array([r["size"] ** 2 for r in rows], float)
        for key, name in (("wall_s", "time"), ("peak_rss", "peak RSS")):
            slope = np.polyfit(np.log(px), np.log([r[key] for r in rows]), 1)[0]
            print(f"{name} grows as pixels^{slope:.2f} (1.00 = linear)")
    print("elements written to the store:", rows[-1]["on_disk"])


if __name__ == "__main__":
    main()
