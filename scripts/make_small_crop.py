"""Regenerate ``src/jointseg/datasets/data/xenium_breast_small.npz`` from the full demo crop.

Picks the 600x600 px window (on a 100 px grid) holding the most transcripts, and stores the image
and the transcripts inside it (coordinates shifted so the window's pixel (0, 0) is at 0 um).
Run: ``.venv/bin/python scripts/make_small_crop.py``.
"""

from pathlib import Path

import numpy as np

import jointseg as jg
from jointseg.datasets._xenium import PIXEL_SIZE_UM, SMALL_FILE, VENDOR_CELL_ID

SIZE = 600

sdata = jg.datasets.xenium_breast(subset="full")
image = sdata["morphology"].values[0]
pts = sdata["transcripts"].compute()
px, py = pts["x"].to_numpy() / PIXEL_SIZE_UM, pts["y"].to_numpy() / PIXEL_SIZE_UM
best = None
for y0 in range(0, image.shape[0] - SIZE + 1, 100):
    for x0 in range(0, image.shape[1] - SIZE + 1, 100):
        n = int(((px >= x0) & (px < x0 + SIZE) & (py >= y0) & (py < y0 + SIZE)).sum())
        if best is None or n > best[0]:
            best = (n, y0, x0)
n, y0, x0 = best
inside = (np.rint(px) >= x0) & (np.rint(px) < x0 + SIZE) & (np.rint(py) >= y0) & (np.rint(py) < y0 + SIZE)
sub = pts[inside]
genes = np.asarray(sdata["transcripts"]["feature_name"].cat.categories, dtype="U")
out = Path(__file__).parents[1] / "src/jointseg/datasets/data" / SMALL_FILE
np.savez_compressed(
    out,
    image=image[y0 : y0 + SIZE, x0 : x0 + SIZE],
    x=(sub["x"].to_numpy() - x0 * PIXEL_SIZE_UM).astype(np.float32),
    y=(sub["y"].to_numpy() - y0 * PIXEL_SIZE_UM).astype(np.float32),
    z=sub["z"].to_numpy().astype(np.float32),
    genes=genes,
    gene_code=np.searchsorted(genes, sub["feature_name"].astype(str).to_numpy()).astype(np.int16),
    qv=sub["qv"].to_numpy(np.float32),
    overlaps_nucleus=sub["overlaps_nucleus"].to_numpy(np.uint8),
    **{VENDOR_CELL_ID: sub[VENDOR_CELL_ID].to_numpy(np.int64)},
    transcript_id=sub["transcript_id"].to_numpy(np.uint64),
    origin_px=np.array([y0, x0]),
)
print(f"window y0={y0} x0={x0}: {len(sub)} transcripts -> {out} ({out.stat().st_size / 1e6:.2f} MB)")
