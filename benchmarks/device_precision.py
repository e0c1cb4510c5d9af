"""How much the cells move when the networks compute at a GPU's lower precision, measured on the CPU.

Without a GPU, the part of a cross-device difference that comes from arithmetic can still be
measured: CUDA runs the convolutions in TF32 (10-bit mantissa) and GeneSegNet's and SSL-CST's
inference under float16 autocast, against float32 on the CPU. Each network is trained once on the
real Xenium crop (float32, CPU, a short schedule), then applied to the whole crop three times: in
float32, in float32 again (same device: must be identical), and under CPU float16 autocast
(``torch.autocast("cpu", dtype=torch.float16)``, every autocast-eligible op in float16, so a
little more rounding than CUDA's path). Training on a GPU would also follow another trajectory;
that part needs a GPU and is not measured here.

Prints, per method: cells in each run, whether the float32 reruns are identical, the share of
foreground pixels whose cell is the same after matching cells one to one (IoU > 0.5), the mean
best-match IoU and the share of cells with a match of IoU > 0.9.

Run: ``.venv/bin/python benchmarks/device_precision.py [--methods genesegnet segjointgene sslcst]``.
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import torch

import jointseg as jg

sys.path.insert(0, str(Path(__file__).parent))
from _compare import same_pixels

SHORT = {
    "genesegnet": {"steps": 60, "max_rounds": 1},
    "segjointgene": {"steps": 60, "max_rounds": 1, "config": jg.seg.SegJointGeneConfig(cid_windows=2, cid_steps=5)},
    "sslcst": {"steps": 150},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=list(SHORT))
    args = parser.parse_args()
    logging.getLogger("jointseg").setLevel(logging.WARNING)
    sdata = jg.datasets.xenium_breast()
    jg.pp.nuclei(sdata, image_key="morphology")
    keys = {"image_key": "morphology", "points_key": "transcripts", "device": "cpu", "progress": False}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            fn = getattr(jg.seg, method)
            path = Path(tmp) / f"{method}.pt"
            start = time.perf_counter()
            fn(sdata, save_model=path, key_added="train", shapes_key="train_s", table_key="train_t", overwrite=True,
               **SHORT[method], **keys)  # fmt: skip
            trained = time.perf_counter() - start
            labels = {}
            for run, dtype in (("fp32", None), ("fp32 again", None), ("fp16", torch.float16)):
                start = time.perf_counter()
                # autocast is per thread: the blocks run in this one (dask's synchronous scheduler)
                with (
                    dask.config.set(scheduler="synchronous"),
                    torch.autocast("cpu", dtype=dtype or torch.float16, enabled=dtype is not None),
                ):
                    fn(sdata, model=path, key_added="run", shapes_key="run_s", table_key="run_t", overwrite=True,
                       **keys)  # fmt: skip
                labels[run] = (np.asarray(sdata["run"].values), time.perf_counter() - start)
            ref, fp16 = labels["fp32"][0], labels["fp16"][0]
            scores = jg.metrics.instance_scores(fp16, ref, threshold=0.9)
            rows.append({
                "method": method, "train s": trained, "fp32 s": labels["fp32"][1], "fp16 s": labels["fp16"][1],
                "cells fp32": len(np.unique(ref)) - 1, "cells fp16": len(np.unique(fp16)) - 1,
                "fp32 rerun identical": bool(np.array_equal(ref, labels["fp32 again"][0])),
                "same pixels": same_pixels(ref, fp16), "mean IoU": jg.metrics.instance_scores(fp16, ref)["mean_iou"],
                "cells IoU>0.9": scores["recall"],
            })  # fmt: skip
            print(rows[-1], flush=True)
    print(f"\n{'method':<13} {'cells fp32':>10} {'cells fp16':>10} {'fp32 rerun':>10} {'same px':>8} {'mean IoU':>8} "
          f"{'IoU>0.9':>8} {'fp32 s':>7} {'fp16 s':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['method']:<13} {r['cells fp32']:>10,} {r['cells fp16']:>10,} "
              f"{'identical' if r['fp32 rerun identical'] else 'DIFFERS':>10} {r['same pixels']:>8.4f} "
              f"{r['mean IoU']:>8.4f} {r['cells IoU>0.9']:>8.4f} {r['fp32 s']:>7.1f} {r['fp16 s']:>7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
