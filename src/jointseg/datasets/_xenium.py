"""The real demo data: a crop of 10x Genomics Xenium FFPE human breast cancer, replicate 1.

Janesick et al. 2023, *Nature Communications* 14:8353, data CC BY 4.0 (10x Genomics). The crop
(DAPI max projection 2400x1800 px at 0.2125 um/px, 186,146 transcripts of 313 genes) is the one
BIDCell ships in its wheel. A 600x600 px sub-crop ships with jointseg itself, so tests and the
demo also work where PyPI cannot be reached.
"""

from __future__ import annotations

import io
from importlib.resources import files
from typing import Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd
import tifffile
from spatialdata import SpatialData
from spatialdata.models import Image2DModel, PointsModel
from spatialdata.transformations import Identity, Scale

from jointseg._core.constants import DEFAULT_CS, IMAGE_KEY, POINTS_KEY
from jointseg.datasets._fetch import XENIUM_DIR, demo_wheel

PIXEL_SIZE_UM = 0.2125
#: Micron coordinates of pixel (0, 0) of the full crop in the original slide.
CROP_ORIGIN_UM = (1062.0, 212.0)
SMALL_FILE = "xenium_breast_small.npz"
VENDOR_CELL_ID = "xenium_cell_id"


def xenium_breast(*, subset: Literal["full", "small"] = "full", chunks: int = 1024) -> SpatialData:
    """Real Xenium human breast cancer crop, with spatialdata-io's Xenium element names and columns.

    Unlike ``spatialdata_io.xenium``, whose ``"global"`` system is in image pixels, ``"global"``
    here is in microns; jointseg reads the units of both (see :func:`jointseg.pp.microns_per_unit`).

    Parameters
    ----------
    subset
        ``"full"``: the 2400x1800 px crop with 186,146 transcripts (fetched once with pip from the
        ``bidcell==1.0.3`` wheel into ``~/.cache/jointseg``, sha256-checked). ``"small"``: a
        600x600 px sub-crop shipped inside jointseg (no download).
    chunks
        Dask chunk size of the image.

    Returns
    -------
    SpatialData with image ``"morphology"`` (``c, y, x``, uint16, ``Scale(0.2125)`` to
    ``"global"``, i.e. microns) and points ``"transcripts"`` (microns; ``feature_name``
    categorical, ``z``, ``qv``, ``overlaps_nucleus`` and the vendor's own cell id as
    ``xenium_cell_id``: a comparison baseline only, never an input to jointseg).

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.xenium_breast(subset="small")
    >>> sdata["morphology"].shape
    (1, 600, 600)

    """
    if subset == "full":
        with demo_wheel() as wheel:
            image = tifffile.imread(io.BytesIO(wheel.read(f"{XENIUM_DIR}/morphology_mip_small.tif")))
            with wheel.open(f"{XENIUM_DIR}/transcripts_small.csv") as fh:
                raw = pd.read_csv(fh, index_col=0)
        transcripts = pd.DataFrame(
            {
                "x": raw["x_location"].to_numpy() - CROP_ORIGIN_UM[0],
                "y": raw["y_location"].to_numpy() - CROP_ORIGIN_UM[1],
                "z": raw["z_location"].to_numpy(),
                "feature_name": raw["feature_name"].astype(str).to_numpy(),
                "qv": raw["qv"].to_numpy(np.float32),
                "overlaps_nucleus": raw["overlaps_nucleus"].to_numpy(np.uint8),
                VENDOR_CELL_ID: raw["cell_id"].to_numpy(np.int64),
                "transcript_id": raw["transcript_id"].to_numpy(np.uint64),
            }
        )
    elif subset == "small":
        with (files("jointseg.datasets") / "data" / SMALL_FILE).open("rb") as fh:
            npz = np.load(fh, allow_pickle=False)
            image = npz["image"]
            genes = npz["genes"]
            transcripts = pd.DataFrame(
                {
                    "x": npz["x"].astype(np.float64),
                    "y": npz["y"].astype(np.float64),
                    "z": npz["z"].astype(np.float64),
                    "feature_name": genes[npz["gene_code"]],
                    "qv": npz["qv"],
                    "overlaps_nucleus": npz["overlaps_nucleus"],
                    VENDOR_CELL_ID: npz[VENDOR_CELL_ID],
                    "transcript_id": npz["transcript_id"],
                }
            )
    else:
        raise ValueError(f"subset must be 'full' or 'small', got {subset!r}.")
    return xenium_like_sdata(image, transcripts, pixel_size=PIXEL_SIZE_UM, chunks=chunks)


def xenium_like_sdata(
    image: np.ndarray,
    transcripts: pd.DataFrame,
    *,
    pixel_size: float,
    chunks: int = 1024,
    partition_size: int = 100_000,
) -> SpatialData:
    """Build a SpatialData with spatialdata-io's Xenium element names and columns, ``"global"`` in microns.

    ``image`` is ``(y, x)``; ``transcripts`` has ``x``, ``y`` (microns, pixel (0, 0) at 0) and
    ``z`` plus ``feature_name`` and any other columns.
    """
    img = Image2DModel.parse(
        image[np.newaxis],
        dims=("c", "y", "x"),
        c_coords=["DAPI"],
        transformations={DEFAULT_CS: Scale([pixel_size, pixel_size], axes=("y", "x"))},
        chunks=(1, chunks, chunks),
    )
    df = transcripts.copy()
    df["feature_name"] = df["feature_name"].astype("category")
    ddf = dd.from_pandas(df, npartitions=max(1, -(-len(df) // partition_size)))
    pts = PointsModel.parse(
        ddf,
        coordinates={"x": "x", "y": "y", "z": "z"},
        feature_key="feature_name",
        transformations={DEFAULT_CS: Identity()},
    )
    return SpatialData(images={IMAGE_KEY: img}, points={POINTS_KEY: pts})
