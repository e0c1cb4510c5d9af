"""Cell calling (GeneSegNet's evaluation): transcripts inside cells vs just outside them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from spatialdata import SpatialData

from jointseg._core.constants import CELL_LABELS_KEY, DEFAULT_CS
from jointseg._core.transcripts import build_transcript_index
from jointseg._core.utils import labels_2d, resolve_key


def cell_calling(
    sdata: SpatialData,
    *,
    labels_key: str = CELL_LABELS_KEY,
    points_key: str | None = None,
    deltas: tuple[int, ...] = (3, 5, 7),
    coordinate_system: str = DEFAULT_CS,
) -> dict[int, float]:
    """Transcripts inside cells divided by transcripts in the ring of ``delta`` pixels just outside
    the cells, for each ``delta``; higher means boundaries sit where transcripts stop.

    The ring is every unassigned pixel within ``delta`` pixels (Euclidean) of a cell. Transcripts
    are placed on the labels' pixel grid by rounding (the package's pixel convention). The labels
    are loaded whole: meant for evaluation crops, not whole slides.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> calling = cell_calling(sdata, labels_key="true_cells", deltas=(3,))
    >>> calling[3] > 1
    True

    """
    points_key = resolve_key(sdata, "points", points_key)
    labels = np.asarray(labels_2d(sdata, labels_key).data)
    index = build_transcript_index(
        sdata,
        points_key,
        labels_key,
        shape=labels.shape,
        block_size=max(labels.shape),
        coordinate_system=coordinate_system,
    )
    y = np.rint(index.y).astype(np.int64)
    x = np.rint(index.x).astype(np.int64)
    inside = labels[y, x] > 0
    distance = ndi.distance_transform_edt(labels == 0)
    n_inside = int(inside.sum())
    return {int(d): n_inside / max(int(((distance[y, x] > 0) & (distance[y, x] <= d)).sum()), 1) for d in deltas}
