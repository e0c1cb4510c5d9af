"""Peak memory and wall time of the full pipeline on synthetic slides of 3 sizes, written lazily to disk.

Each size runs in a fresh process on a backed SpatialData (``spatialdata.read_zarr``): nuclei,
then a segmentation method and its outputs (polygons, table, per-transcript ids). New elements go
straight into the store (``write_element``, under a hidden name renamed when complete). The bar
is a peak RSS of at most 2 GB + 50 bytes per transcript.

Methods (``--method``):

- ``expand_nuclei``: RNA density map, nuclei grown into it;
- ``refine``: ``expand_nuclei``, then :func:`jointseg.seg.refine` of its cells (timed apart:
  ``refine s`` and ``refine tx/s``, transcripts per second of the refinement alone);
- ``genesegnet``, ``segjointgene``, ``sslcst``: inference of the method's network with a model
  trained once, outside the measurements, on a 1024 px corner of the smallest slide with a short
  schedule and loaded by every run (``cells s``), then its default refinement (``refine s``);
  with ``--train-on-slide`` each run trains on its own slide instead (the default schedule, timed
  in ``cells s``).

With ``--cli`` each size runs the command line instead, as a user would on a whole slide:
``jointseg segment SLIDE OUT --method M [--model MODEL] -q`` (nuclei, cells, the method's default
refinement, and a new store written with every element); ``cells s`` is then its wall time and the
peak is the command's own RSS. ``--per-cell`` sets the transcripts per nucleus (76 gives the
issue's 12k x 12k slide with 5 M transcripts).

The last lines extrapolate the time of the largest size linearly to a 1 Gpx slide (a whole
Xenium slide: ~25k x 35k px at 0.2125 um) and give the exponent with which time grew here.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--sizes 4096 8192 16384] [--method expand_nuclei]
[--workdir /tmp/jg_bench] [--train-on-slide] [--cli] [--per-cell 170]``. Prints one row per size, then how
time and memory grow with the number of pixels.
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
NETWORKS = ("genesegnet", "segjointgene", "sslcst")
WHOLE_SLIDE_PX = 1e9


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _short_schedule(method: str) -> dict:
    """A short training schedule per network (the model only has to exist: speed does not depend on
    how well it was trained).
    """
    import jointseg as jg

    return {
        "genesegnet": {"steps": 60, "max_rounds": 1},
        "segjointgene": {
            "steps": 60, "max_rounds": 1,
            "config": jg.seg.SegJointGeneConfig(cid_windows=2, cid_steps=5, max_tiles=8),
        },
        "sslcst": {"steps": 150},
    }[method]  # fmt: skip


def child(path: str, method: str, model: str | None) -> None:
    import spatialdata

    import jointseg as jg

    sdata = spatialdata.read_zarr(path)
    times = {}
    start = time.perf_counter()
    jg.pp.nuclei(sdata, image_key="morphology", overwrite=True)
    times["nuclei_s"] = time.perf_counter() - start
    peaks = {"nuclei": _peak_rss()}  # the running peak after each step: the step that raised it holds it
    inputs = {"image_key": "morphology", "points_key": "transcripts", "overwrite": True}
    start = time.perf_counter()
    if method in NETWORKS:
        segment = getattr(jg.seg, method)
        segment(sdata, **inputs, model=model, device="cpu", refine=False, progress=False)
    else:
        jg.seg.expand_nuclei(sdata, **inputs)
    times["cells_s"] = time.perf_counter() - start
    peaks["cells"] = _peak_rss()
    table_key = "table"
    if method != "expand_nuclei":
        start = time.perf_counter()
        jg.seg.refine(sdata, labels_key="cell_labels", **inputs)
        times["refine_s"] = time.perf_counter() - start
        peaks["refine"] = _peak_rss()
        table_key = "refined_table"
    table = sdata[table_key]
    info = table.uns["jointseg"][table_key]
    peak = _peak_rss()
    on_disk = sorted(p.split("/")[-1] for p in sdata.elements_paths_on_disk())
    print(json.dumps({**times, "peak_rss": peak, "peaks": peaks, "n_cells": table.n_obs,
                      "n_tx": info["n_transcripts_total"], "assigned": info["n_transcripts_assigned"],
                      "on_disk": on_disk}))  # fmt: skip


def cli_child(path: str, method: str, model: str | None) -> None:
    """``jointseg segment`` on the slide in a subprocess: its wall time, its peak RSS, and its results."""
    import spatialdata

    out = f"{path.removesuffix('.zarr')}_{method}_cli.zarr"
    command = [sys.executable, "-m", "jointseg.cli", "segment", path, out, "--method", method, "-q", "--overwrite"]
    start = time.perf_counter()
    _run(command + (["--model", model, "--device", "cpu"] if model else []))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    table = spatialdata.read_zarr(out, selection=("tables",))["table"]
    info = table.uns["jointseg"]["table"]
    print(json.dumps({"nuclei_s": float("nan"), "cells_s": wall, "peak_rss": peak, "peaks": {"jointseg segment": peak},
                      "n_cells": table.n_obs, "n_tx": info["n_transcripts_total"],
                      "assigned": info["n_transcripts_assigned"], "on_disk": []}))  # fmt: skip


def train(path: str, method: str, model: str) -> None:
    """Train the model that every size loads (a short schedule, on a 1024 px corner of the slide)."""
    import spatialdata

    import jointseg as jg

    sdata = spatialdata.bounding_box_query(
        jg.io.read_zarr(path), axes=("y", "x"), min_coordinate=[0, 0], max_coordinate=[1024 * 0.2125] * 2,
        target_coordinate_system="global",
    )  # fmt: skip
    jg.pp.nuclei(sdata, image_key="morphology")
    segment = getattr(jg.seg, method)
    segment(sdata, image_key="morphology", points_key="transcripts", save_model=model, device="cpu", refine=False,
            progress=False, **_short_schedule(method))  # fmt: skip


def _run(command: list[str]) -> subprocess.CompletedProcess:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[4096, 8192, 16384])
    parser.add_argument("--workdir", default="/tmp/jg_bench")
    parser.add_argument("--method", choices=["expand_nuclei", "refine", *NETWORKS], default="expand_nuclei")
    parser.add_argument("--train-on-slide", action="store_true", help="each run trains its network on its slide")
    parser.add_argument("--cli", action="store_true", help="run `jointseg segment` on each slide")
    parser.add_argument("--per-cell", type=int, default=PER_CELL, help="transcripts per nucleus")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train(args.train, args.method, args.model)
        return
    if args.child:
        (cli_child if args.cli else child)(args.child, args.method, args.model)
        return
    from _slide import write_slide

    rows = []
    model = None
    for size in args.sizes:
        path = Path(args.workdir) / f"slide_{size}_{args.per_cell}.zarr"
        start = time.perf_counter()
        n_tx = write_slide(path, size, per_cell=args.per_cell)
        written = time.perf_counter() - start
        if args.method in NETWORKS and not args.train_on_slide and model is None:
            model = str(Path(args.workdir) / f"{args.method}.pt")
            _run([sys.executable, __file__, "--train", str(path), "--method", args.method, "--model", model])
        start = time.perf_counter()
        command = [sys.executable, __file__, "--child", str(path), "--method", args.method] + ["--cli"] * args.cli
        out = _run(command + (["--model", model] if model else []))
        wall = time.perf_counter() - start
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.update(size=size, wall_s=wall, write_s=written, bar=2e9 + 50 * n_tx)
        rows.append(res)
        print(f"{size}: {res}", flush=True)

    how = " (trained on each slide)" if args.train_on_slide else ""
    print(f"\nmethod: {args.method}{how}" + (", `jointseg segment` (cells s: the whole command)" if args.cli else ""))
    print(f"{'slide px':>12} {'transcripts':>12} {'cells':>8} {'write s':>8} {'nuclei s':>9} {'cells s':>8} "
          f"{'refine s':>9} {'refine tx/s':>12} {'total s':>8} {'peak RSS GB':>12} {'bar GB':>7} "
          f"{'B/tx over 2GB':>14}")  # fmt: skip
    for r in rows:
        over = (r["peak_rss"] - 2e9) / r["n_tx"]
        refine_s = r.get("refine_s", float("nan"))
        print(f"{r['size']:>6}^2 {r['n_tx']:>14,} {r['n_cells']:>8,} {r['write_s']:>8.1f} {r['nuclei_s']:>9.1f} "
              f"{r['cells_s']:>8.1f} {refine_s:>9.1f} {r['n_tx'] / refine_s:>12,.0f} {r['wall_s']:>8.1f} "
              f"{r['peak_rss'] / 1e9:>12.2f} {r['bar'] / 1e9:>7.2f} {over:>14.1f}")  # fmt: skip
    print("running peak RSS after each step (GB):")
    for r in rows:
        print(f"{r['size']:>6}^2  " + "  ".join(f"{step} {value / 1e9:.2f}" for step, value in r["peaks"].items()))
    if len(rows) > 1:
        px = np.array([r["size"] ** 2 for r in rows], float)
        for key, name in (("wall_s", "time"), ("peak_rss", "peak RSS")):
            slope = np.polyfit(np.log(px), np.log([r[key] for r in rows]), 1)[0]
            print(f"{name} grows as pixels^{slope:.2f} (1.00 = linear)")
    last = rows[-1]
    scale = WHOLE_SLIDE_PX / last["size"] ** 2
    print(
        f"a 1 Gpx slide, linear from {last['size']}^2: {last['wall_s'] * scale / 60:,.0f} min "
        f"({last['n_tx'] * scale / 1e6:,.0f} M transcripts at this density)"
    )
    print("elements written to the store:", rows[-1]["on_disk"])


if __name__ == "__main__":
    main()
