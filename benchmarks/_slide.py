"""A synthetic whole slide written lazily to a zarr store: stain chunk by chunk, transcripts as a
partitioned parquet, never materialised whole (used by bench_memory.py).

Nuclei sit on a jittered grid (one per 48 px cell, 0.2125 um pixels); every chunk of the stain and
every partition of the transcripts is drawn from the nuclei near it alone, with seeds taken from
grid positions, so any chunk can be generated independently and the slide is the same whatever
the chunking.
"""

from pathlib import Path

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from spatialdata import SpatialData
from spatialdata.models import Image2DModel, PointsModel
from spatialdata.transformations import Identity, Scale

PX = 0.2125
SPACING = 48
GENES = np.array([f"G{i:03d}" for i in range(300)])


def _nuclei_near(y0: int, y1: int, x0: int, x1: int, margin: int) -> np.ndarray:
    """(cy, cx, radius, grid_i, grid_j) of the nuclei whose centres lie within ``margin`` of a window."""
    rows = range(max((y0 - margin) // SPACING, 0), (y1 + margin) // SPACING + 1)
    cols = range(max((x0 - margin) // SPACING, 0), (x1 + margin) // SPACING + 1)
    out = []
    for i in rows:
        for j in cols:
            rng = np.random.default_rng([i, j])
            dy, dx = rng.integers(-10, 11, 2)
            out.append((i * SPACING + SPACING // 2 + dy, j * SPACING + SPACING // 2 + dx, rng.uniform(8, 13), i, j))
    return np.array(out, dtype=np.float64).reshape(-1, 5)


def _stain_chunk(block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    stain = np.zeros((y1 - y0, x1 - x0), np.float32)
    for cy, cx, r, *_ in _nuclei_near(y0, y1, x0, x1, margin=16):
        sl = (slice(max(int(cy - r - 3) - y0, 0), max(int(cy + r + 4) - y0, 0)),
              slice(max(int(cx - r - 3) - x0, 0), max(int(cx + r + 4) - x0, 0)))  # fmt: skip
        d = np.sqrt((yy[sl] - cy) ** 2 + (xx[sl] - cx) ** 2)
        stain[sl] = np.maximum(stain[sl], np.clip(r + 0.5 - d, 0, 1))
    noise = np.random.default_rng([y0, x0]).normal(0, 0.03, stain.shape).astype(np.float32)
    return np.clip(stain * 3000 + 200 + noise * 3000, 0, 65535).astype(np.uint16)[np.newaxis]


def _transcripts_band(y0: int, y1: int, width: int, per_cell: int) -> pd.DataFrame:
    nuclei = _nuclei_near(y0, y1, 0, width, margin=0)
    nuclei = nuclei[(nuclei[:, 0] >= y0) & (nuclei[:, 0] < y1)]
    rng = np.random.default_rng([y0, 7])
    n = rng.poisson(per_cell, len(nuclei))
    centre = np.repeat(nuclei[:, :2], n, axis=0)
    xy = centre + rng.normal(0, 22, (len(centre), 2))  # ~4.7 um spread around the nucleus
    types = np.repeat((nuclei[:, 3] + nuclei[:, 4]) % 3, n).astype(np.int64)
    specific = types * 100 + rng.integers(0, 100, len(xy))  # 70% from the cell type's 100 genes
    genes = np.where(rng.random(len(xy)) < 0.7, specific, rng.integers(0, 300, len(xy)))
    return pd.DataFrame(
        {
            "x": xy[:, 1] * PX,
            "y": xy[:, 0] * PX,
            "feature_name": pd.Categorical.from_codes(genes, categories=GENES),
        }
    )


def write_slide(path: Path, size: int, *, per_cell: int = 40, chunk: int = 2048) -> int:
    """Write a ``size`` x ``size`` slide to ``path``; return the number of transcripts."""
    chunks = ((1,), *da.core.normalize_chunks(chunk, (size, size)))
    stain = da.map_blocks(_stain_chunk, dtype=np.uint16, chunks=chunks)
    image = Image2DModel.parse(
        stain, dims=("c", "y", "x"), c_coords=["DAPI"], transformations={"global": Scale([PX, PX], axes=("y", "x"))}
    )
    bands = range(0, size, chunk)
    meta = _transcripts_band(0, 0, size, per_cell)
    parts = [dask.delayed(_transcripts_band)(y0, min(y0 + chunk, size), size, per_cell) for y0 in bands]
    points = PointsModel.parse(
        dd.from_delayed(parts, meta=meta, verify_meta=False),
        coordinates={"x": "x", "y": "y"},
        feature_key="feature_name",
        transformations={"global": Identity()},
    )
    SpatialData(images={"morphology": image}, points={"transcripts": points}).write(path, overwrite=True)
    return int(dd.read_parquet(Path(path) / "points" / "transcripts" / "points.parquet").shape[0].compute())
