"""GPU readiness: every network method trained and run on a CUDA device, on the real crop and on a
large synthetic slide, beside the CPU.

Per method (``--methods``):

1. **Crop** (the real Xenium crop): train on the device with the method's defaults and segment
   (timed), then segment again on the CPU with the same model. Prints training and segmentation
   times, transcripts/s, the peak GPU memory and the agreement of the two segmentations (share
   of foreground pixels in the same matched cell, mean best-match IoU).
2. **Slide** (synthetic, ``--size`` px square, written to ``--workdir``): a model trained on the
   device on a 1024 px corner (short schedule), then the whole slide segmented on the device:
   tiles/s (blocks of 2048 px), transcripts/s and the peak GPU memory. The CPU comparison runs on
   a 2048 px corner (the whole slide on a CPU takes hours).

Run on a machine with CUDA: ``.venv/bin/python benchmarks/gpu_check.py [--size 16384]``.
``--device cpu --size 2048 --quick`` runs every step on the CPU with short schedules: a check of
the script itself, not a measurement.
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import spatialdata
import torch

import jointseg as jg

sys.path.insert(0, str(Path(__file__).parent))
from _compare import same_pixels
from _slide import write_slide
from bench_memory import PER_CELL, _short_schedule

METHODS = ("genesegnet", "segjointgene", "sslcst")
BLOCK = 2048


def _peak_gpu(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else float("nan")


def _reset_gpu(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _segment(sdata, method: str, device: str, **kwargs) -> tuple[np.ndarray, float]:
    """Segment on ``device``; the labels and the seconds it took."""
    start = time.perf_counter()
    getattr(jg.seg, method)(sdata, image_key="morphology", points_key="transcripts", device=device,
                            overwrite=True, progress=False, **kwargs)  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return np.asarray(sdata["cell_labels"].values), time.perf_counter() - start


def _agreement(device_labels: np.ndarray, cpu_labels: np.ndarray) -> dict:
    return {
        "same px": same_pixels(cpu_labels, device_labels),
        "mean IoU": jg.metrics.instance_scores(device_labels, cpu_labels)["mean_iou"],
    }


def _n_transcripts(sdata) -> int:
    return len(sdata["transcripts"])


def check_crop(method: str, device: str, quick: bool, tmp: Path) -> dict:
    sdata = jg.datasets.xenium_breast()
    jg.pp.nuclei(sdata, image_key="morphology")
    model = tmp / f"{method}_crop.pt"
    schedule = _short_schedule(method) if quick else {}
    _reset_gpu(device)
    start = time.perf_counter()
    getattr(jg.seg, method)(sdata, image_key="morphology", points_key="transcripts", device=device,
                            save_model=model, progress=False, **schedule)  # fmt: skip
    trained = time.perf_counter() - start
    on_device, seconds = _segment(sdata, method, device, model=model)
    peak = _peak_gpu(device)
    on_cpu, cpu_seconds = _segment(sdata, method, "cpu", model=model)
    n_tx = _n_transcripts(sdata)
    return {"where": "crop", "method": method, "train+segment s": trained, "segment s": seconds,
            "cpu segment s": cpu_seconds, "tx/s": n_tx / seconds, "tiles/s": float("nan"), "peak GPU GB": peak,
            **_agreement(on_device, on_cpu)}  # fmt: skip


def check_slide(method: str, device: str, size: int, workdir: Path) -> dict:
    path = workdir / f"slide_{size}.zarr"
    if not path.exists():
        write_slide(path, size, per_cell=PER_CELL)
    corner = spatialdata.bounding_box_query(
        jg.io.read_zarr(path), axes=("y", "x"), min_coordinate=[0, 0], max_coordinate=[1024 * 0.2125] * 2,
        target_coordinate_system="global",
    )  # fmt: skip
    jg.pp.nuclei(corner, image_key="morphology", overwrite=True)
    model = workdir / f"{method}_slide.pt"
    getattr(jg.seg, method)(corner, image_key="morphology", points_key="transcripts", device=device, save_model=model,
                            refine=False, overwrite=True, progress=False, **_short_schedule(method))  # fmt: skip
    sdata = spatialdata.read_zarr(path)
    jg.pp.nuclei(sdata, image_key="morphology", overwrite=True)
    _reset_gpu(device)
    _, seconds = _segment(sdata, method, device, model=model)
    peak = _peak_gpu(device)
    n_tx = _n_transcripts(sdata)
    window = spatialdata.bounding_box_query(
        sdata, axes=("y", "x"), min_coordinate=[0, 0], max_coordinate=[BLOCK * 0.2125] * 2,
        target_coordinate_system="global",
    )  # fmt: skip
    window = spatialdata.SpatialData(
        images={"morphology": window["morphology"]}, labels={"nuclei": window["nuclei"]},
        points={"transcripts": window["transcripts"]},
    )  # fmt: skip
    on_device, _ = _segment(window, method, device, model=model)
    on_cpu, _ = _segment(window, method, "cpu", model=model)
    return {"where": f"slide {size}^2", "method": method, "train+segment s": float("nan"), "segment s": seconds,
            "cpu segment s": float("nan"), "tx/s": n_tx / seconds, "tiles/s": (-(-size // BLOCK)) ** 2 / seconds,
            "peak GPU GB": peak, **_agreement(on_device, on_cpu)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--workdir", default="/tmp/jg_gpu")
    parser.add_argument("--quick", action="store_true", help="short training on the crop (checks the script)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA device here: run on a machine with a GPU, or pass --device cpu to check the script.")
    logging.getLogger("jointseg").setLevel(logging.WARNING)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda"):
        print(torch.cuda.get_device_name(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            rows.append(check_crop(method, args.device, args.quick, Path(tmp)))
            print(rows[-1], flush=True)
            rows.append(check_slide(method, args.device, args.size, workdir))
            print(rows[-1], flush=True)
    print(f"\ndevice: {args.device}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
