"""Dense fields predicted by a network over a whole slide, window by window, on a global window grid.

Windows sit at the same global positions whatever the block layout, and every pixel averages the
outputs of all windows that cover it (weights tapering to window edges). A block therefore gets
exactly the field the whole image would have, as long as it reads its input one window beyond its
core: tiled and untiled runs differ only by floating-point noise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from jointseg._core.tiling import window_weights

#: One network call at a time per process: torch already uses every core for one call, and dask
#: threads running several calls at once oversubscribe the cores (measured 3x slower on 2 cores).
_NETWORK_LOCK = threading.Lock()


def inference_batch(device: str, *, cpu: int = 1, accelerator: int = 8) -> int:
    """Inputs per network call at inference on ``device``: ``cpu`` on a CPU, ``accelerator`` elsewhere
    (defaults: 256 px windows of a U-Net).

    A CPU gains nothing from large batches, and their activations (tens of MB per layer) are
    allocated afresh at every call: on 2 cores GeneSegNet's U-Net ran 2x faster on 256 px windows
    one at a time than eight at a time, which spent 45% of its time in page faults.

    Examples
    --------
    >>> inference_batch("cpu"), inference_batch("cuda:0"), inference_batch("cpu", cpu=256, accelerator=4096)
    (1, 8, 256)

    """
    return cpu if device == "cpu" else accelerator


def locked(predict: Callable, *args):
    """``predict(*args)`` holding the process-wide network lock."""
    with _NETWORK_LOCK:
        return predict(*args)


def window_origins(length: int, window: int, stride: int) -> np.ndarray:
    """Start of every window along an axis of ``length`` pixels; the last one ends at the edge.

    Examples
    --------
    >>> window_origins(600, 256, 224).tolist()
    [0, 224, 344]

    """
    if length <= window:
        return np.array([0])
    return np.array(sorted({*range(0, length - window + 1, stride), length - window}))


def covering_windows(start: int, stop: int, length: int, window: int, stride: int) -> np.ndarray:
    """Origins of the global windows that overlap ``[start, stop)``."""
    origins = window_origins(length, window, stride)
    return origins[(origins < stop) & (origins + window > start)]


def predict_fields_on_region(
    region: tuple[int, int, int, int],
    shape: tuple[int, int],
    read_inputs: Callable[[tuple[int, int, int, int]], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    window: int,
    stride: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Field of a network on ``region = (y0, y1, x0, x1)`` of an image of ``shape``.

    Parameters
    ----------
    region
        Output window in image pixels.
    shape
        Image shape ``(H, W)``: the window grid is defined on it.
    read_inputs
        ``read_inputs((y0, y1, x0, x1)) -> (C, y1 - y0, x1 - x0)`` network input of an image window.
    predict
        Maps ``(N, C, window, window)`` to ``(N, K, window, window)``.
    window, stride
        Window edge and step in pixels.
    batch_size
        Windows per call of ``predict``.

    Returns
    -------
    ``(K, y1 - y0, x1 - x0)`` float32 field.

    """
    y0, y1, x0, x1 = region
    h, w = shape
    oys = covering_windows(y0, y1, h, window, stride)
    oxs = covering_windows(x0, x1, w, window, stride)
    iy0, ix0 = int(oys[0]), int(oxs[0])
    iy1, ix1 = min(int(oys[-1]) + window, h), min(int(oxs[-1]) + window, w)
    inputs = read_inputs((iy0, iy1, ix0, ix1))
    pad_y = max(int(oys[-1]) + window - iy0 - inputs.shape[1], 0)
    pad_x = max(int(oxs[-1]) + window - ix0 - inputs.shape[2], 0)
    if pad_y or pad_x:  # only when the image is smaller than a window
        inputs = np.pad(inputs, ((0, 0), (0, pad_y), (0, pad_x)))
    weights = window_weights(window)
    corners = [(oy - iy0, ox - ix0) for oy in oys for ox in oxs]
    acc = None
    norm = np.zeros(inputs.shape[1:], np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        out = np.asarray(predict(np.stack([inputs[:, y : y + window, x : x + window] for y, x in chunk])))
        if acc is None:
            acc = np.zeros((out.shape[1], *inputs.shape[1:]), np.float32)
        for (y, x), field in zip(chunk, out, strict=True):
            acc[:, y : y + window, x : x + window] += field * weights
            norm[y : y + window, x : x + window] += weights
    sl = (slice(None), slice(y0 - iy0, y1 - iy0), slice(x0 - ix0, x1 - ix0))
    return acc[sl] / norm[sl[1:]]


def sliding_window_average(
    array: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], *, window: int, stride: int, batch_size: int = 8
) -> np.ndarray:
    """Apply ``predict`` to overlapping windows of a whole ``(C, H, W)`` array and blend the outputs.

    Outputs of overlapping windows are averaged with weights that taper towards window edges, so a
    field predicted this way has no seams; see :func:`predict_fields_on_region`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((1, 40, 50), np.float32)
    >>> float(sliding_window_average(x, lambda b: 2 * b, window=16, stride=12).max())
    2.0

    """
    _, h, w = array.shape
    return predict_fields_on_region(
        (0, h, 0, w),
        (h, w),
        lambda r: array[:, r[0] : r[1], r[2] : r[3]],
        predict,
        window=window,
        stride=stride,
        batch_size=batch_size,
    )
