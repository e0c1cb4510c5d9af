"""Agreement of two segmentations of the same image, for the device benchmarks."""

import numpy as np

import jointseg as jg


def same_pixels(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the pixels in the foreground of either that both give to the same (matched) cell."""
    pairs = jg.metrics.match_instances(b, a)
    pairs = pairs[pairs["iou"] > 0.5]  # one to one
    lut = np.zeros(int(b.max()) + 1, np.int64)
    lut[pairs["pred"].to_numpy()] = pairs["true"].to_numpy()
    mapped = lut[b]
    fg = (a > 0) | (b > 0)
    return float(((mapped == a) & fg).sum() / max(fg.sum(), 1))
