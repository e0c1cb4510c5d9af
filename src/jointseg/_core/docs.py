"""Parameter and return documentation shared by the segmentation methods, written once (as squidpy's ``_docs.py``).

Use ``@d.dedent`` on a function and ``%(name)s`` in its docstring.
"""

from __future__ import annotations

from docrep import DocstringProcessor

_inputs = """\
sdata
    SpatialData with the stain, the transcripts and the nuclei (:func:`jointseg.pp.nuclei`).
image_key, points_key
    The stain (its pixel grid and transformations are the output's) and the transcripts; may be
    omitted when there is only one element of the kind.
nuclei_key
    Nuclei labels from :func:`jointseg.pp.nuclei`: the cells' seeds (or the training prior) and the
    nucleus link in the table."""

_channel = """\
channel
    Stain channel (index or name) of a multichannel image; default the first."""

_model = """\
model
    A trained model, or the path of a saved one: skip training and segment with it.
save_model
    Write the trained model to this path (load it with the model class's ``load``)."""

_config = """\
config
    The options few users change (default: the config class's defaults). The 0.1 way of passing
    them as keyword arguments of the method still works, with a :class:`FutureWarning`."""

_run = """\
block_size
    Block edge in pixels for whole-slide inference; memory is bounded by it.
device
    Torch device (default: cuda, then mps, then cpu).
seed
    Seed of everything random in training: the same seed on the same device gives the same model
    and cells (exactly on one CPU thread; on several, some torch kernels sum in varying order,
    which can change the last digits of SSL-CST's weights)."""

_outputs = """\
key_added, shapes_key, table_key
    Names of the new labels, polygons and table.
coordinate_system
    Coordinate system that links the elements and gives the units.
overwrite
    Replace existing elements of these names (and the points' ``jg_cell_id`` column).
copy
    Work on a copy and return it, leaving ``sdata`` unchanged."""

_refine = """\
refine
    Refine the cells by each cell's own expression before writing them (:func:`jointseg.seg.refine`
    with its defaults and ``seed``): on the real crop and the synthetic regimes this is the measured
    better default (docs/results.md); False gives the method's own cells, as its paper describes
    them. A dict refines with these options of :func:`jointseg.seg.refine` instead of its defaults
    (e.g. ``{"background_border": 1.0}`` to close the gaps between cells of packed tissue); a method
    with a foreground field (GeneSegNet) also takes ``foreground_weight``, the weight of the
    network's foreground log-odds beside the transcripts in the solver (default 0: the transcripts
    alone). What the expression model found is recorded in ``uns["jointseg"][key_added]["refine"]``."""

_progress = """\
progress
    Show progress bars."""

_segmentation_returns = """\
None, or the new SpatialData if ``copy``. Adds to ``sdata``:

- labels ``key_added``: the cells, renumbered 1..N (uint32), on the stain's pixel grid;
- shapes ``shapes_key``: their polygons, indexed by cell id;
- table ``table_key``: cells x genes counts (as :func:`jointseg.tl.aggregate`) annotating the
  labels, with ``obs["nucleus_id"]`` and the run's parameters in ``uns["jointseg"][key_added]``;
- points column ``jg_cell_id``: each transcript's cell (0: none)."""

d = DocstringProcessor(
    inputs=_inputs,
    channel=_channel,
    model=_model,
    config=_config,
    run=_run,
    outputs=_outputs,
    progress=_progress,
    refine=_refine,
    segmentation_returns=_segmentation_returns,
)
