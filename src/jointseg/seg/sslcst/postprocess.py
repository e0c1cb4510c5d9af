"""Direction fields to cells (SCS/SSL-CST post-processing): direction classes, the nucleus-position
prior, smoothing, gradient-flow tracking to sinks, sink merging, hole filling and small-cell removal.

Everything works on the bin grid and is vectorised: flow tracking follows every foreground bin at
once by pointer doubling (``log2(max_steps)`` array passes), not by a Python loop per bin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from jointseg._core.masks import fill_holes, keep_largest_piece


def direction_class(dy: np.ndarray, dx: np.ndarray, n: int = 16) -> np.ndarray:
    """Class of the direction ``(dy, dx)``: its angle ``atan2(dy, dx)`` in ``[0, 2 pi)`` cut into
    ``n`` equal sectors, sector 0 starting at ``+x`` (the paper's Eq. 12).

    Examples
    --------
    >>> direction_class(np.array([0.0, 1.0, 0.0, -1.0]), np.array([1.0, 0.0, -1.0, 0.0])).tolist()
    [0, 4, 8, 12]

    """
    angle = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    return np.minimum((angle / (2 * np.pi) * n).astype(np.int64), n - 1)


def class_vectors(n: int = 16) -> np.ndarray:
    """Unit vectors ``(n, 2)`` as ``(dy, dx)`` at the centre of each direction class."""
    angle = (np.arange(n) + 0.5) * 2 * np.pi / n
    return np.c_[np.sin(angle), np.cos(angle)]


def direction_prior(
    y: np.ndarray, x: np.ndarray, centres_y: np.ndarray, centres_x: np.ndarray, *, radius: float, n: int = 16
) -> np.ndarray:
    """Allowed direction classes ``(len(y), n)`` of bins ``(y, x)``: the classes pointing to a nucleus
    centroid within ``radius``; failing that within ``1.25 * radius``; failing that all of them.
    """
    allowed = np.ones((len(y), n), bool)
    if len(centres_y) == 0 or len(y) == 0:
        return allowed
    pairs = cKDTree(np.c_[y, x]).sparse_distance_matrix(
        cKDTree(np.c_[centres_y, centres_x]), 1.25 * radius, output_type="ndarray"
    )
    i, j, d = pairs["i"], pairs["j"], pairs["v"]
    cls = direction_class(centres_y[j] - y[i], centres_x[j] - x[i], n)
    near, far = np.zeros((len(y), n), bool), np.zeros((len(y), n), bool)
    near[i[d <= radius], cls[d <= radius]] = True
    far[i, cls] = True
    return np.where(near.any(1)[:, None], near, np.where(far.any(1)[:, None], far, allowed))


def smooth(field: np.ndarray, *, passes: int = 2) -> np.ndarray:
    """``passes`` 3 x 3 means over the last two axes (each bin with its eight neighbours)."""
    size = (1,) * (field.ndim - 2) + (3, 3)
    for _ in range(passes):
        field = ndi.uniform_filter(field, size=size, mode="nearest")
    return field


def track_flows(
    foreground: np.ndarray, vectors: np.ndarray, *, stop: np.ndarray | None = None, max_steps: int = 64
) -> np.ndarray:
    """Where the flow from each foreground bin ends: flat index of its sink (-1 off the foreground).

    From a bin, one step goes to the neighbour nearest to ``bin + v / |v|``. The flow stops at a
    bin whose step would leave the foreground or the array, whose vector is zero, or whose next
    vector turns back (cosine of consecutive steps <= 0); it stops after ``max_steps`` steps
    otherwise. A flow entering a bin continues as that bin's flow, so flows are computed for every
    bin at once by pointer doubling. Flows also stop on entering a ``stop`` bin (labelled bins).
    """
    h, w = foreground.shape
    flat = np.arange(h * w)
    vy, vx = vectors
    norm = np.hypot(vy, vx)
    safe = np.maximum(norm, 1e-12)
    uy, ux = vy / safe, vx / safe
    yy, xx = np.divmod(flat, w)
    ny = yy + np.rint(uy.ravel()).astype(np.int64)
    nx = xx + np.rint(ux.ravel()).astype(np.int64)
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    target = np.where(inside, np.clip(ny, 0, h - 1) * w + np.clip(nx, 0, w - 1), flat)
    fg = foreground.ravel()
    cosine = uy.ravel() * uy.ravel()[target] + ux.ravel() * ux.ravel()[target]
    flat_norm = norm.ravel()
    # A flow may enter a bin without direction (it stops there), but not turn back.
    moves = inside & fg[target] & (flat_norm > 1e-6) & ((cosine > 0) | (flat_norm[target] <= 1e-6))
    if stop is not None:
        moves &= ~stop.ravel()
    nxt = np.where(moves & fg, target, flat)
    for _ in range(int(np.ceil(np.log2(max(max_steps, 2))))):
        nxt = nxt[nxt]
    return np.where(fg, nxt, -1)


def cells_from_sinks(
    sinks: np.ndarray, shape: tuple[int, int], nuclei: np.ndarray, *, merge_distance: float = 3.5
) -> np.ndarray:
    """Cell labels from each bin's sink: sinks closer than ``merge_distance`` bins (unless they lie
    on two different nuclei), or on the same nucleus, are one cell.
    """
    labels = np.zeros(shape, np.int64)
    fg = sinks >= 0
    if not fg.any():
        return labels
    unique, inverse = np.unique(sinks[fg], return_inverse=True)
    sy, sx = np.divmod(unique, shape[1])
    edges = cKDTree(np.c_[sy, sx]).query_pairs(merge_distance, output_type="ndarray").reshape(-1, 2)
    on_nucleus = nuclei.ravel()[unique]
    a, b = on_nucleus[edges[:, 0]], on_nucleus[edges[:, 1]]
    edges = edges[(a == 0) | (b == 0) | (a == b)]  # sinks on two different nuclei stay two cells
    idx = np.flatnonzero(on_nucleus > 0)
    order = idx[np.argsort(on_nucleus[idx], kind="stable")]
    same = on_nucleus[order[1:]] == on_nucleus[order[:-1]]
    edges = np.r_[edges, np.c_[order[:-1][same], order[1:][same]]]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(unique), len(unique)))
    _, group = connected_components(graph, directed=False)
    labels.ravel()[np.flatnonzero(fg)] = group[inverse] + 1
    return labels


def flow_cells(
    foreground_probability: np.ndarray,
    vectors: np.ndarray,
    nuclei: np.ndarray,
    *,
    threshold: float = 0.1,
    merge_distance: float = 3.5,
    max_steps: int = 64,
    max_hole_area: int = 4,
    min_area: int = 1,
) -> np.ndarray:
    """Cells (int64 labels, 1..n) of a bin grid from the foreground probability ``(h, w)`` and the
    direction vectors ``(2, h, w)``: both smoothed by two 3 x 3 means, foreground above
    ``threshold``, flows tracked to sinks (a flow entering a nucleus stops there: nuclei are labelled
    bins), sinks merged (see :func:`cells_from_sinks`), holes of at
    most ``max_hole_area`` bins enclosed by one cell filled, then each cell's largest piece kept and
    cells under ``min_area`` bins dropped.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:9, :9]
    >>> vectors = np.stack([4 - yy, 4 - xx]).astype(float)  # everything flows to the centre
    >>> cells = flow_cells(np.ones((9, 9)), vectors, np.zeros((9, 9), int))
    >>> int(cells.max()), int((cells == 1).sum())
    (1, 81)

    """
    probability = smooth(foreground_probability)
    vectors = smooth(vectors)
    foreground = probability > threshold
    sinks = track_flows(foreground, vectors, stop=nuclei > 0, max_steps=max_steps)
    labels = cells_from_sinks(sinks, foreground.shape, nuclei, merge_distance=merge_distance)
    labels = keep_largest_piece(fill_holes(labels, max_hole_area=max_hole_area))
    area = np.bincount(labels.ravel())
    area[0] = 0
    keep = area >= min_area
    keep[0] = False
    lut = np.zeros(len(area), np.int64)
    lut[keep] = np.arange(1, keep.sum() + 1)
    return lut[labels]
