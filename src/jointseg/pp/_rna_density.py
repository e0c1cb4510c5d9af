"""RNA density maps: GeneSegNet's transcript location map, and per-gene channels."""

from __future__ import annotations

import logging

import dask
import numpy as np
from scipy import ndimage as ndi
from spatialdata import SpatialData, deepcopy
from spatialdata.models import Image2DModel
from spatialdata.transformations import get_transformation

from jointseg._core.constants import DEFAULT_CS, RNA_DENSITY_KEY
from jointseg._core.density import location_map
from jointseg._core.tiling import BlockGrid, array_from_blocks
from jointseg._core.transcripts import TranscriptIndex, build_transcript_index
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import check_new_key, image_2d, resolve_key

logger = logging.getLogger("jointseg")


def gene_channels(
    index: TranscriptIndex, window: tuple[int, int, int, int], *, genes: np.ndarray, sigma: float
) -> np.ndarray:
    """Per-gene density on one window: transcripts binned to pixels, Gaussian-blurred (``sigma``
    pixels, truncated at 4 sigma). Returns ``(len(genes), h, w)`` float32.
    """
    y0, y1, x0, x1 = window
    reach = int(np.ceil(4 * sigma))
    gy0, gy1 = max(y0 - reach, 0), min(y1 + reach, index.shape[0])
    gx0, gx1 = max(x0 - reach, 0), min(x1 + reach, index.shape[1])
    sel = index.window(gy0, gy1, gx0, gx1)
    lut = np.full(index.n_genes + 1, -1, np.int64)
    lut[genes] = np.arange(len(genes))
    channel = lut[index.gene[sel]]
    keep = channel >= 0
    counts = np.zeros((len(genes), gy1 - gy0, gx1 - gx0), np.float32)
    np.add.at(
        counts,
        (
            channel[keep],
            np.rint(index.y[sel][keep]).astype(int) - gy0,
            np.rint(index.x[sel][keep]).astype(int) - gx0,
        ),
        1.0,
    )
    blurred = ndi.gaussian_filter(counts, sigma=(0, sigma, sigma), truncate=4.0)
    return blurred[:, y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]


def rna_density(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    points_key: str | None = None,
    key_added: str = RNA_DENSITY_KEY,
    sigma_um: float = 1.4,
    per_gene: bool = False,
    genes: list[str] | None = None,
    gene_sigma_um: float = 1.25,
    block_size: int = 1024,
    coordinate_system: str = DEFAULT_CS,
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Add a lazy RNA density image aligned to the stain, computed block by block.

    Without ``per_gene``: GeneSegNet's RNA location map, one channel ``"rna"``: per pixel the
    maximum over all transcripts of an unnormalised Gaussian (sigma 1.4 um = 7 px at 0.2 um/px),
    truncated below 0.01 and therefore in ``[0, 1]`` (the maximum, not GeneSegNet's paper's clipped
    sum). With ``per_gene``: one channel per gene (transcripts binned to pixels and blurred with
    ``gene_sigma_um``), the input of SegJointGene. Each block reads only its own transcripts (plus
    the Gaussian's reach), so no full-slide dense array is ever made.

    Parameters
    ----------
    sdata
        SpatialData with the stain image and the transcripts.
    image_key, points_key
        The stain (whose pixel grid the map uses) and the transcripts.
    key_added
        Name of the new image element.
    sigma_um, gene_sigma_um
        Gaussian widths in the units of ``coordinate_system``.
    per_gene
        One channel per gene instead of the location map.
    genes
        Genes for the per-gene channels (default: all non-control genes).
    block_size
        Chunk edge in pixels.
    coordinate_system
        Coordinate system that links the points and the image.
    overwrite, copy
        See :func:`jointseg.pp.nuclei`.

    Returns
    -------
    None, or the new SpatialData if ``copy``. Adds an image ``key_added`` (float32, ``c, y, x``)
    with the stain's transformations.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=5)
    >>> jg.pp.rna_density(sdata, image_key="morphology", points_key="transcripts")
    >>> float(sdata["rna_density"].max())
    1.0

    """
    if copy:
        sdata = deepcopy(sdata)
    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    check_new_key(sdata, key_added, overwrite=overwrite)
    shape = tuple(int(s) for s in image_2d(sdata, image_key).shape)
    index = build_transcript_index(
        sdata, points_key, image_key, shape=shape, block_size=block_size, coordinate_system=coordinate_system
    )
    px = pixel_size_um(sdata, image_key, coordinate_system)
    grid = BlockGrid(shape=shape, block_size=block_size, halo=0)
    if per_gene:
        names = list(index.genes.astype(str))
        if genes is None:
            codes = np.unique(index.gene[index.gene >= 0])
        else:
            missing = sorted(set(genes) - set(names))
            if missing:
                raise KeyError(f"Genes not in points {points_key!r}: {missing[:10]}.")
            codes = np.array([names.index(g) for g in genes])
        c_coords = [names[c] for c in codes]
        fn, kwargs, n_channels = gene_channels, {"genes": codes, "sigma": gene_sigma_um / px}, len(codes)
    else:
        c_coords = ["rna"]
        n_channels = 1

        def fn(index, window, sigma):
            return location_map(index, window, sigma=sigma)[np.newaxis]

        kwargs = {"sigma": sigma_um / px}
    data = array_from_blocks(
        grid,
        lambda blk: dask.delayed(fn, pure=True)(index, blk.core, **kwargs),
        dtype=np.float32,
        leading=(n_channels,),
    )
    element = Image2DModel.parse(
        data,
        dims=("c", "y", "x"),
        c_coords=c_coords,
        transformations=get_transformation(sdata[image_key], get_all=True),
    )
    sdata[key_added] = element
    logger.info("Added RNA density %r (%d channel(s)) from %d transcripts.", key_added, n_channels, len(index.x))
    return sdata if copy else None
