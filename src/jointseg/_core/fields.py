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

from jointseg._core.resample import grid_coordinates, prefilter_margin, prefilter_sigma, resample, working_shape
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


def _window_span(region, shape, window: int, stride: int):
    """The global windows covering ``region`` (origins along y and x) and the image window they span."""
    y0, y1, x0, x1 = region
    h, w = shape
    oys = covering_windows(y0, y1, h, window, stride)
    oxs = covering_windows(x0, x1, w, window, stride)
    return oys, oxs, (int(oys[0]), min(int(oys[-1]) + window, h), int(oxs[0]), min(int(oxs[-1]) + window, w))


def _on_working_grid(region, shape, factor: float):
    """For a grid ``factor`` times coarser than the image: its shape, the region on it that holds the
    centres of ``region``'s pixels (with their bilinear neighbours), and those centres' coordinates in it.
    """
    y0, y1, x0, x1 = region
    grid = working_shape(shape, factor)
    ys, xs = grid_coordinates(y0, y1, 1 / factor), grid_coordinates(x0, x1, 1 / factor)
    wy0, wx0 = (int(np.clip(np.floor(c[0]), 0, n - 1)) for c, n in ((ys, grid[0]), (xs, grid[1])))
    wy1, wx1 = (int(np.clip(np.floor(c[-1]) + 2, 1, n)) for c, n in ((ys, grid[0]), (xs, grid[1])))
    return grid, (wy0, wy1, wx0, wx1), ys - wy0, xs - wx0


def _image_window(working_region, shape, factor: float) -> tuple[int, int, int, int]:
    """The image window that the inputs of ``working_region`` (a grid ``factor`` times coarser) are
    resampled from, with the context that makes them independent of the window.
    """
    a, b, c, d = working_region
    margin = prefilter_margin(factor)
    h, w = shape
    return (max(int(np.floor(a * factor)) - margin, 0), min(int(np.ceil(b * factor)) + margin, h),
            max(int(np.floor(c * factor)) - margin, 0), min(int(np.ceil(d * factor)) + margin, w))  # fmt: skip


def input_region(
    region: tuple[int, int, int, int], shape: tuple[int, int], *, window: int, stride: int, factor: float = 1.0
) -> tuple[int, int, int, int]:
    """The image window :func:`predict_fields_on_region` reads its inputs from for ``region``.

    Examples
    --------
    >>> input_region((300, 400, 0, 10), (600, 600), window=256, stride=224)
    (224, 600, 0, 256)

    """
    if factor == 1:
        return _window_span(region, shape, window, stride)[2]
    grid, working_region, _, _ = _on_working_grid(region, shape, factor)
    return _image_window(_window_span(working_region, grid, window, stride)[2], shape, factor)


def predict_fields_on_region(
    region: tuple[int, int, int, int],
    shape: tuple[int, int],
    read_inputs: Callable[[tuple[int, int, int, int]], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    window: int,
    stride: int,
    batch_size: int = 8,
    factor: float = 1.0,
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
        Window edge and step in pixels (of the network's grid).
    batch_size
        Windows per call of ``predict``.
    factor
        The network's grid is ``factor`` times coarser than the image's (see
        :mod:`jointseg._core.resample`): the inputs are smoothed and sampled onto it, the windows lie
        on it, and the fields are sampled back bilinearly. Values are not rescaled: a field measured
        in pixels (an offset) is in the network's pixels.

    Returns
    -------
    ``(K, y1 - y0, x1 - x0)`` float32 field.

    """
    if factor == 1:
        return _fields_on_grid(region, shape, read_inputs, predict, window, stride, batch_size)
    grid, working_region, ys, xs = _on_working_grid(region, shape, factor)

    def read_working(r):
        iy0, _, ix0, _ = image_window = _image_window(r, shape, factor)
        inputs = read_inputs(image_window)
        return resample(inputs, grid_coordinates(r[0], r[1], factor, iy0), grid_coordinates(r[2], r[3], factor, ix0),
                        order=1, sigma=prefilter_sigma(factor))  # fmt: skip

    fields = _fields_on_grid(working_region, grid, read_working, predict, window, stride, batch_size)
    return resample(fields, ys, xs, order=1)


def _fields_on_grid(region, shape, read_inputs, predict, window: int, stride: int, batch_size: int) -> np.ndarray:
    y0, y1, x0, x1 = region
    oys, oxs, (iy0, iy1, ix0, ix1) = _window_span(region, shape, window, stride)
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
