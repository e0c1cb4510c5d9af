"""What every segmentation method does around its own science: check and resolve its inputs before
any work, read the transcripts once, load a saved model, and write the cells.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dask.array as da
import numpy as np
from spatialdata import SpatialData

from jointseg._core.backed import materialise, writes_to_store
from jointseg._core.cell_extent import CellExtent, estimated_extent
from jointseg._core.checkpoint import active as checkpoint_active
from jointseg._core.constants import DEFAULT_CS
from jointseg._core.outputs import check_outputs_free, write_segmentation
from jointseg._core.refinement import RefineParams, refine_labels
from jointseg._core.trained_model import TrainedModel
from jointseg._core.transcripts import TranscriptIndex, build_transcript_index
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import image_2d, labels_2d, resolve_key, select_device

logger = logging.getLogger("jointseg")

M = TypeVar("M", bound=TrainedModel)


@dataclass
class MethodRun:
    """The resolved inputs of one segmentation run (built by :func:`start_run`).

    Parameters
    ----------
    sdata
        The SpatialData the run reads and writes.
    method
        The method's public function name, recorded in ``uns``.
    title
        The method's name in messages.
    image_key, points_key, nuclei_key
        The stain (its pixel grid is the output's), the transcripts and the nuclei labels.
    index
        The transcripts on the stain's pixel grid.
    pixel_size_um
        The stain's pixel size.
    device
        The torch device.
    coordinate_system
        The coordinate system linking the elements.
    started
        :func:`time.perf_counter` when the run started.

    """

    sdata: SpatialData
    method: str
    title: str
    image_key: str
    points_key: str
    nuclei_key: str
    index: TranscriptIndex
    pixel_size_um: float
    device: str
    coordinate_system: str
    started: float = field(default_factory=time.perf_counter)
    _extent: CellExtent | None = field(default=None, repr=False)
    _clean_ups: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stain(self, channel: int | str | None = None) -> da.Array:
        """The stain's full-resolution ``(y, x)`` dask array."""
        return image_2d(self.sdata, self.image_key, channel=channel).data

    def nuclei(self) -> da.Array:
        """The nuclei labels' full-resolution ``(y, x)`` dask array."""
        return labels_2d(self.sdata, self.nuclei_key).data

    def cell_extent(self) -> CellExtent:
        """How far this slide's cells reach beyond their nuclei (estimated once per run and logged;
        see :func:`jointseg._core.cell_extent.estimate_cell_extent`).
        """
        if self._extent is None:
            self._extent = estimated_extent(self.nuclei(), self.index, pixel_size_um=self.pixel_size_um)
        return self._extent

    def expansion_px(self, expansion_um: float | None) -> float | np.ndarray:
        """Growth from each nucleus in pixels: ``expansion_um`` for all, or (None) each nucleus's
        estimated extent as an array indexed by nucleus id.
        """
        if expansion_um is None:
            return self.cell_extent().per_nucleus_um / self.pixel_size_um
        return expansion_um / self.pixel_size_um

    def largest_cell_um(self, max_cell_diameter_um: float | None, *, at_least: float) -> float:
        """``max_cell_diameter_um``, or (None) the 99th percentile of the estimated cell diameters
        but ``at_least`` (a network's cells can outgrow the nuclei's extents): the halo between blocks.
        """
        if max_cell_diameter_um is not None:
            return max_cell_diameter_um
        if self.nuclei_key not in self.sdata.labels:
            logger.warning(
                "%s: no nuclei %r to estimate cell sizes from; the halo between blocks holds cells up to %.0f um "
                "(pass max_cell_diameter_um to change it).", self.title, self.nuclei_key, at_least,
            )  # fmt: skip
            return at_least
        largest = max(self.cell_extent().largest_cell_um(), at_least)
        logger.info("%s: cells up to %.1f um across (estimated), the halo between blocks.", self.title, largest)
        return largest

    def growth_limit_um(self, max_expansion_um: float | None) -> float:
        """``max_expansion_um``, or (None) 1.25 times the 95th percentile of the estimated extents:
        the farthest a method lets any cell grow beyond its nucleus.
        """
        if max_expansion_um is not None:
            return max_expansion_um
        return 1.25 * self.cell_extent().summary()["p95"]

    def extent_params(self) -> dict[str, dict[str, float]]:
        """The estimated extents for ``uns`` (``{}`` if none was estimated in this run)."""
        return {} if self._extent is None else {"cell_extent_um": self._extent.summary()}

    def load_model(self, model: M | str | os.PathLike | None, kind: type[M], *, resampled: bool = False) -> M | None:
        """``model`` on the run's device, read from a file if it is a path (None: train one).

        Logs a warning when the model was trained at a pixel size more than 10% away from this
        slide's, unless the method samples the slide onto the model's grid (``resampled``).
        """
        if model is None:
            return None
        model = model.to(self.device) if isinstance(model, kind) else kind.load(model, device=self.device)
        trained_at = getattr(model, "pixel_size_um", None)
        if trained_at is not None and abs(self.pixel_size_um / trained_at - 1) > 0.1 and not resampled:
            logger.warning(
                "%s model was trained at %.3f um/px; this image has %.3f um/px (inputs are not resampled).",
                self.title, trained_at, self.pixel_size_um,
            )  # fmt: skip
        return model

    def spill(self, array: da.Array) -> da.Array | None:
        """``array`` computed once onto disk (into the active checkpoint, or beside a backed
        store) and read lazily from there until :meth:`finish` returns; None when this run has
        nowhere on disk to put it.
        """
        if not (checkpoint_active() or writes_to_store(self.sdata)):
            return None
        on_disk, clean_up = materialise(self.sdata, array)
        self._clean_ups.append(clean_up)
        return on_disk

    def finish(
        self,
        labels: da.Array,
        *,
        params: dict[str, Any],
        key_added: str,
        shapes_key: str,
        table_key: str,
        overwrite: bool,
        refine: RefineParams | None = None,
        largest_cell_um: float = 30.0,
        grow_um: float | None = None,
        gene_weights: np.ndarray | None = None,
        foreground: da.Array | None = None,
    ) -> None:
        """Write the cell labels, their polygons, the count table and the per-transcript cell ids
        (see :func:`jointseg._core.outputs.write_segmentation`), with ``params`` in ``uns``.

        With ``refine``, the cells are first refined by their expression
        (:func:`jointseg._core.refinement.refine_labels`; blocks get a halo of ``largest_cell_um``
        plus the growth): cells grow by up to ``grow_um`` (None: :meth:`growth_limit_um`, or 0 without
        nuclei), each gene's evidence weighs ``gene_weights`` (one per gene of the index; None: all
        the same), a method's ``foreground`` probability (lazy, on the pixel grid) is the solver's
        prior with ``refine.foreground_weight``, and ``params["refine"]`` records what the expression
        model found.
        """
        clean_up = None
        params.setdefault("refine", None)
        if refine is not None and refine.foreground_weight > 0 and foreground is None:
            raise ValueError(f"{self.title} has no foreground field for the refinement's foreground_weight.")
        if refine is not None:
            has_nuclei = self.nuclei_key in self.sdata.labels
            if grow_um is None:
                grow_um = self.growth_limit_um(None) if has_nuclei else 0.0
            # ``unrefined`` (a local, so referenced until this method returns) must outlive the write:
            # on a distributed cluster its persisted blocks are released with the last reference.
            unrefined, clean_up = materialise(self.sdata, labels.astype(np.int64))
            labels, params["refine"] = refine_labels(
                unrefined, self.nuclei() if has_nuclei else None, self.index, pixel_size_um=self.pixel_size_um,
                grow_um=grow_um, largest_cell_um=largest_cell_um, params=refine, gene_weights=gene_weights,
                foreground=foreground,
            )  # fmt: skip
            params.update(self.extent_params())
        try:
            self._write(labels, params=params, key_added=key_added, shapes_key=shapes_key, table_key=table_key,
                        overwrite=overwrite)  # fmt: skip
        finally:
            for done in [clean_up, *self._clean_ups]:
                if done is not None:
                    done()
            self._clean_ups.clear()

    def _write(self, labels: da.Array, *, params, key_added, shapes_key, table_key, overwrite) -> None:
        write_segmentation(
            self.sdata, labels, self.index, image_key=self.image_key, points_key=self.points_key,
            nuclei_key=self.nuclei_key if self.nuclei_key in self.sdata.labels else None,
            labels_key=key_added, shapes_key=shapes_key, table_key=table_key, method=self.method, params=params,
            coordinate_system=self.coordinate_system, overwrite=overwrite,
        )  # fmt: skip
        logger.info("%s: done in %.1f s", self.title, time.perf_counter() - self.started)


def start_run(
    sdata: SpatialData,
    *,
    method: str,
    title: str | None = None,
    image_key: str | None,
    points_key: str | None,
    nuclei_key: str,
    outputs: list[str] | None,
    overwrite: bool = False,
    needs_nuclei: bool = True,
    at_least_one: dict[str, int] | None = None,
    device: str | None = None,
    channel: int | str | None = None,
    index_block_size: int = 512,
    grid_key: str | None = None,
    coordinate_system: str = DEFAULT_CS,
) -> MethodRun:
    """Check a method's inputs before any work, then read the transcripts onto the stain's grid.

    Checks, in order: the image and points keys (see :func:`jointseg._core.utils.resolve_key`), that
    the ``outputs`` and the points' cell-id column are free (or ``overwrite``; ``outputs=None``
    for a run that writes nothing, such as training), that the nuclei
    exist when ``needs_nuclei``, and that every count in ``at_least_one`` is >= 1. The transcript
    index covers the pixel grid of ``grid_key`` (default: the stain) in buckets of
    ``index_block_size`` px.

    Raises
    ------
    KeyError
        If a key names no element, or the nuclei are needed and missing.
    ValueError
        If an output exists and ``overwrite`` is False, or a count is below 1.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(64, 64), n_cells=3)
    >>> run = start_run(sdata, method="doc", image_key=None, points_key=None, nuclei_key="nuclei",
    ...                 outputs=["cells"], overwrite=False, needs_nuclei=False)
    >>> run.image_key, run.index.shape
    ('morphology', (64, 64))

    """
    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    if outputs is not None:
        check_outputs_free(sdata, outputs, points_key, overwrite=overwrite)
    if needs_nuclei and nuclei_key not in sdata.labels:
        raise KeyError(
            f"No nuclei labels {nuclei_key!r}: run jg.pp.nuclei(sdata, image_key={image_key!r}) first "
            f"(available labels: {list(sdata.labels)})."
        )
    for name, value in (at_least_one or {}).items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    device = select_device(device)
    if grid_key is None:
        shape = tuple(int(s) for s in image_2d(sdata, image_key, channel=channel).shape)
    else:
        shape = tuple(int(s) for s in labels_2d(sdata, grid_key).shape)
    started = time.perf_counter()
    index = build_transcript_index(
        sdata, points_key, image_key, shape=shape, block_size=index_block_size, coordinate_system=coordinate_system
    )
    return MethodRun(
        sdata, method, title or method, image_key, points_key, nuclei_key, index,
        pixel_size_um(sdata, image_key, coordinate_system), device, coordinate_system, started,
    )  # fmt: skip
