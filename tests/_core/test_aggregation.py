import dask.array as da
import numpy as np
import pandas as pd

from jointseg._core.aggregation import nucleus_counts
from jointseg._core.transcripts import build_transcript_index
from jointseg.datasets._xenium import xenium_like_sdata


def test_nucleus_counts_sum_each_nucleus_transcripts_per_kept_gene():
    rows = [(0, 0, "a"), (1, 1, "a"), (1, 0, "b"), (4, 4, "b"), (5, 8, "c"), (5, 9, "c"), (9, 9, "a")]
    points = pd.DataFrame({
        "y": [float(r[0]) for r in rows], "x": [float(r[1]) for r in rows], "z": 0.0,
        "feature_name": pd.Categorical([r[2] for r in rows], categories=["a", "b", "c"]),
    })  # fmt: skip
    sdata = xenium_like_sdata(np.zeros((10, 10), np.uint16), points, pixel_size=1.0, chunks=10)
    index = build_transcript_index(sdata, "transcripts", "morphology", shape=(10, 10))
    nuclei = np.zeros((10, 10), np.int32)
    nuclei[:2, :2] = 1
    nuclei[5, 7:] = 3  # id 2 absent; the transcript at (4, 4) is outside every nucleus
    # Gene "b" left out; "c" in column 0, "a" in column 1.
    counts = nucleus_counts(da.from_array(nuclei, chunks=5), index, np.array([1, -1, 0]), 2)
    np.testing.assert_array_equal(counts.toarray(), [[0, 0], [0, 2], [0, 0], [2, 0]])
