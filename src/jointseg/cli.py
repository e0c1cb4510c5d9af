"""The ``jointseg`` command line: segment a SpatialData zarr store, or run the demo."""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from spatialdata import SpatialData

logger = logging.getLogger("jointseg")


def _methods() -> dict[str, Callable]:
    from jointseg import seg

    return {
        "expand_nuclei": seg.expand_nuclei,
        "genesegnet": seg.genesegnet,
        "segjointgene": seg.segjointgene,
        "sslcst": seg.sslcst,
    }


def method_options(method: str, args: argparse.Namespace) -> dict:
    """The network options given on the command line that ``method`` takes; an option given
    explicitly to a method that does not take it is an error.
    """
    accepted = inspect.signature(_methods()[method]).parameters
    options = {"device": args.device, "seed": args.seed, "steps": args.steps, "model": args.model}
    explicit = {"steps", "model"}
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in accepted:
            out[name] = value
        elif name in explicit:
            raise ValueError(f"--{name} does not apply to method {method!r}.")
    return out


def check_inputs(sdata: SpatialData, image_key: str | None, points_key: str | None) -> tuple[str, str]:
    """Resolve the image and points keys and check the points carry genes; return the keys."""
    from jointseg._core.transcripts import feature_key
    from jointseg._core.utils import resolve_key

    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    feature_key(sdata, points_key)
    return image_key, points_key


def run_pipeline(
    sdata: SpatialData,
    *,
    image_key: str | None,
    points_key: str | None,
    method: str,
    coordinate_system: str = "global",
    channel: int | str | None = None,
    block_size: int | None = None,
    overwrite: bool = False,
    refine: bool | None = None,
    **method_kwargs,
) -> dict[str, float]:
    """Nuclei (unless present) then ``method``; returns wall times of the steps in seconds.
    ``channel`` picks the stain of a multichannel image, for the nuclei and for methods that read it;
    ``block_size`` (pixels) sets the tiling of the nuclei and of methods that take it; ``refine``
    (None: the method's default) refines the cells by their expression (see :func:`jointseg.seg.refine`).
    """
    import jointseg as jg

    methods = _methods()
    if method not in methods:
        raise KeyError(f"Unknown method {method!r}; available: {sorted(methods)}.")
    image_key, points_key = check_inputs(sdata, image_key, points_key)
    accepted = inspect.signature(methods[method]).parameters
    if channel is not None and "channel" in accepted:
        method_kwargs["channel"] = channel
    nuclei_options = {}
    if block_size is not None:
        nuclei_options["block_size"] = block_size
        if "block_size" in accepted:
            method_kwargs["block_size"] = block_size
    times = {}
    start = time.perf_counter()
    if "nuclei" not in sdata.labels or overwrite:
        jg.pp.nuclei(
            sdata, image_key=image_key, channel=channel, coordinate_system=coordinate_system, overwrite=overwrite,
            **nuclei_options,
        )  # fmt: skip
    times["nuclei_s"] = time.perf_counter() - start
    start = time.perf_counter()
    if refine is not None:
        method_kwargs["refine"] = refine
    methods[method](
        sdata,
        image_key=image_key,
        points_key=points_key,
        coordinate_system=coordinate_system,
        overwrite=overwrite,
        **method_kwargs,
    )
    times["segmentation_s"] = time.perf_counter() - start
    return times


def _read_input(args: argparse.Namespace) -> tuple[SpatialData, Path]:
    """The input store (with ``--microns-per-unit`` applied) and the output path, checked."""
    import jointseg as jg

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"Output {out} exists; pass --overwrite to replace it.")
    if out.resolve() == Path(args.input).resolve():
        raise ValueError("OUTPUT must differ from INPUT: jointseg never writes into its input store.")
    sdata = jg.io.read_zarr(args.input)
    if args.microns_per_unit is not None:
        jg.pp.set_units(sdata, args.microns_per_unit, coordinate_system=args.coordinate_system)
    return sdata, out


def _print_summary(
    name: str, sdata: SpatialData, table_key: str, seconds: float, out: Path, *, refined: bool = False
) -> None:
    import jointseg as jg

    summary = jg.metrics.assignment_summary(sdata[table_key], table_key=table_key)
    how = ", refined by expression" if refined else ""
    print(
        f"{name}: {summary['n_cells']} cells{how}, {summary['fraction_assigned']:.1%} of transcripts assigned, "
        f"median {summary['median_transcripts_per_cell']:.0f} per cell ({seconds:.1f} s) -> {out}"
    )


def _cmd_refine(args: argparse.Namespace) -> None:
    import jointseg as jg

    sdata, out = _read_input(args)
    start = time.perf_counter()
    with jg.io.checkpoint(Path(f"{out}.jointseg-checkpoint"), recover=args.resume, in_memory=False):
        jg.seg.refine(
            sdata, labels_key=args.labels_key, shapes_key=args.shapes_key, image_key=args.image_key,
            points_key=args.points_key,
            nuclei_key=args.nuclei_key, smoothness=args.smoothness, seed=args.seed,
            key_added=args.key_added, boundaries_key=args.boundaries_key, table_key=args.table_key,
            coordinate_system=args.coordinate_system, overwrite=args.overwrite,
            **({"block_size": args.block_size} if args.block_size is not None else {}),
        )  # fmt: skip
        jg.io.write_zarr(sdata, out, overwrite=args.overwrite)
    _print_summary("refine", sdata, args.table_key, time.perf_counter() - start, out)


def _cmd_segment(args: argparse.Namespace) -> None:
    import jointseg as jg

    sdata, out = _read_input(args)
    if args.device is not None:
        jg._core.utils.select_device(args.device)  # fail early on an unknown device string
    # Slide-sized results go block by block to a checkpoint beside the output; --resume reuses the
    # blocks a killed run finished. They are read from there (not held in memory) until the output
    # is written inside the block; the checkpoint is then removed.
    with jg.io.checkpoint(Path(f"{out}.jointseg-checkpoint"), recover=args.resume, in_memory=False):
        times = run_pipeline(
            sdata,
            image_key=args.image_key,
            points_key=args.points_key,
            method=args.method,
            coordinate_system=args.coordinate_system,
            channel=int(args.channel) if args.channel is not None and args.channel.isdigit() else args.channel,
            block_size=args.block_size,
            overwrite=args.overwrite,
            refine=args.refine,
            key_added=args.labels_key,
            shapes_key=args.shapes_key,
            table_key=args.table_key,
            **method_options(args.method, args),
        )
        jg.io.write_zarr(sdata, out, overwrite=args.overwrite)
    refined = sdata[args.table_key].uns["jointseg"][args.labels_key].get("refine") is not None
    _print_summary(args.method, sdata, args.table_key, sum(times.values()), out, refined=refined)


def _cmd_demo(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import jointseg as jg

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset = args.subset
    try:
        sdata = jg.datasets.xenium_breast(subset=subset)
    except RuntimeError as err:
        if subset != "full":
            raise
        logger.warning("%s Falling back to the crop shipped with jointseg.", err)
        subset = "small"
        sdata = jg.datasets.xenium_breast(subset=subset)
    print(f"Xenium human breast cancer crop ({subset}): Janesick et al. 2023, 10x Genomics, CC BY 4.0")
    options = {"steps": args.steps} if args.steps is not None else {}
    refine = not args.no_refine
    kw = {"image_key": "morphology", "points_key": "transcripts", "method": args.method, **options}
    if refine:  # the method's own cells first, for the comparison row
        own = run_pipeline(sdata, refine=False, key_added="unrefined_labels", shapes_key="unrefined_boundaries",
                           table_key="unrefined_table", **kw)  # fmt: skip
        sdata["transcripts"] = sdata["transcripts"].drop(columns="jg_cell_id")
    times = run_pipeline(sdata, refine=refine, **kw)
    name = f"{args.method} + refine" if refine else args.method
    markers = jg.datasets.markers("breast")
    pairs = jg.metrics.exclusive_marker_pairs(markers, genes=list(sdata["table"].var_names))
    rows = {name: _demo_row(sdata, "table", pairs)}
    if refine:
        times = {"nuclei_s": own["nuclei_s"], f"{args.method}_s": own["segmentation_s"],
                 f"{args.method} + refine_s": times["segmentation_s"]}  # fmt: skip
        rows[f"{args.method} (not refined)"] = _demo_row(sdata, "unrefined_table", pairs)
    distance, rows["nuclei expanded to the same fraction"] = _matched_expansion(sdata, rows[name]["assigned"], pairs)
    rows["Xenium's own cells (vendor)"] = _vendor_row(sdata, pairs)
    jg.tl.gene_scores(sdata)
    jg.tl.pseudolabels(sdata)
    table = sdata["table"]
    fig, axes = plt.subplots(1, 2, figsize=(16, 6.5))
    jg.pl.segmentation(sdata, image_key="morphology", nuclei_key="nuclei", ax=axes[0])
    axes[0].set_title(f"{name}: {table.n_obs} cells (red), nuclei (cyan)")
    h, w = sdata["morphology"].shape[-2:]
    zoom = (h // 2 - 200, h // 2 + 200, w // 2 - 300, w // 2 + 300)
    jg.pl.segmentation(sdata, image_key="morphology", points_key="transcripts", region=zoom, ax=axes[1])
    axes[1].set_title("zoom: transcripts assigned (gold) / unassigned (grey)")
    fig.tight_layout()
    figure = out / "segmentation.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    ax = jg.pl.cell_types(sdata, image_key="morphology")
    ax.figure.savefig(out / "cell_types.png", dpi=110)
    plt.close(ax.figure)
    top = table.var.sort_values("jg_entropy_rank").index[:10]
    print("most cell-specific genes (spatial entropy):", ", ".join(top))
    counts = table.obs["cell_type"].value_counts()
    print("cell types (pseudolabels):", ", ".join(f"{k} {v}" for k, v in counts.items()))
    jg.io.write_zarr(sdata, out / "demo.zarr", overwrite=True)
    try:
        explorer = jg.io.write_xenium_explorer(sdata, out / "explorer", shapes_key="cell_boundaries", overwrite=True)
        print(f"Xenium Explorer: open {explorer / 'experiment.xenium'}")
    except ImportError as err:
        print(f"Xenium Explorer export skipped: {err}")
    frame = pd.DataFrame(rows).T
    print(f"\n{'':<36} cells  assigned  median tx/cell  MECR ({len(pairs)} exclusive marker pairs)")
    for row_name, r in frame.iterrows():
        print(f"{row_name:<36} {r['cells']:>5.0f}  {r['assigned']:>7.1%}  {r['median']:>14.0f}  {r['mecr']:.4f}")
    print(f"(the same nuclei expanded by {distance:.1f} um assign the same fraction)")
    print(f"nuclei found: {int(sdata['nuclei'].max())}; wall time: "
          + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in times.items()))  # fmt: skip
    print(f"Wrote {out / 'demo.zarr'}, {figure} and {out / 'cell_types.png'}")


def _demo_row(sdata: SpatialData, table_key: str, pairs: list) -> dict[str, float]:
    import jointseg as jg

    summary = jg.metrics.assignment_summary(sdata[table_key], table_key=table_key)
    return {
        "cells": summary["n_cells"],
        "assigned": summary["fraction_assigned"],
        "median": summary["median_transcripts_per_cell"],
        "mecr": jg.metrics.mecr(sdata[table_key], pairs),
    }


def _matched_expansion(sdata: SpatialData, target: float, pairs: list) -> tuple[float, dict[str, float]]:
    """The uniform expansion of the same nuclei that assigns ``target`` of the transcripts (bisection
    on the distance, 0.5-30 um): the baseline a joint method must beat at equal assigned fraction.
    """
    import jointseg as jg

    lo, hi = 0.5, 30.0
    for _ in range(8):
        mid = (lo + hi) / 2
        out = jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", max_distance_um=mid,
                                   key_added="matched_labels", shapes_key="matched_boundaries",
                                   table_key="matched_table", overwrite=True, copy=True)  # fmt: skip
        row = _demo_row(out, "matched_table", pairs)
        lo, hi = (mid, hi) if row["assigned"] < target else (lo, mid)
    return mid, row


def _vendor_row(sdata: SpatialData, pairs: list) -> dict[str, float]:
    """The demo row of the vendor's own per-transcript cell ids (never an input; only compared)."""
    import anndata as ad
    from scipy import sparse

    import jointseg as jg

    points = sdata["transcripts"][["xenium_cell_id", "feature_name"]].compute()
    assigned = points[points["xenium_cell_id"] > 0]
    counts = pd.crosstab(assigned["xenium_cell_id"], assigned["feature_name"])
    table = ad.AnnData(sparse.csr_matrix(counts.to_numpy()), var=pd.DataFrame(index=counts.columns.astype(str)))
    return {
        "cells": len(counts),
        "assigned": len(assigned) / len(points),
        "median": float(np.median(counts.sum(axis=1))),
        "mecr": jg.metrics.mecr(table, pairs, layer=None),
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jointseg`` command."""
    from jointseg import __version__

    parser = argparse.ArgumentParser(prog="jointseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jointseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("segment", "segment cells in a SpatialData zarr store"),
        ("run", "the full pipeline (nuclei, segmentation, table) on a SpatialData zarr store"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", help="input SpatialData zarr store (never modified)")
        p.add_argument("output", help="output zarr store: the input's elements plus the results")
        p.add_argument("--image-key", default=None, help="nuclei stain image (default: the only image)")
        p.add_argument("--points-key", default=None, help="transcripts (default: the only points)")
        p.add_argument("--method", default="expand_nuclei", choices=sorted(_methods()))
        p.add_argument("--coordinate-system", default="global")
        p.add_argument("--channel", default=None, help="stain channel of a multichannel image: name or index")
        p.add_argument(
            "--microns-per-unit",
            type=float,
            default=None,
            help="microns in one unit of the coordinate system (needed for CosMx; see jg.pp.set_units)",
        )
        p.add_argument("--device", default=None, help="torch device for network methods (default: auto)")
        p.add_argument("--seed", type=int, default=0, help="random seed for network methods")
        p.add_argument("--steps", type=int, default=None, help="training steps per round (network methods)")
        p.add_argument("--model", default=None, help="saved model to apply instead of training (network methods)")
        p.add_argument("--labels-key", default="cell_labels", help="name of the new cell labels")
        p.add_argument("--shapes-key", default="cell_boundaries", help="name of the new cell polygons")
        p.add_argument("--table-key", default="table", help="name of the new cells x genes table")
        p.add_argument("--block-size", type=int, default=None, help="tile edge in pixels (default: 2048)")
        p.add_argument(
            "--resume", action="store_true", help="reuse the blocks finished by an interrupted run with the same OUTPUT"
        )
        p.add_argument(
            "--refine",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="refine the cells by their expression (jg.seg.refine); default: on for the network methods, "
            "off for expand_nuclei (the stain-only baseline)",
        )
        p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and existing result keys")
        p.set_defaults(func=_cmd_segment)
    p = sub.add_parser("refine", help="refine any cell labels by each cell's expression (jg.seg.refine)")
    p.add_argument("input", help="input SpatialData zarr store (never modified)")
    p.add_argument("output", help="output zarr store: the input's elements plus the refined cells")
    cells = p.add_mutually_exclusive_group(required=True)
    cells.add_argument("--labels-key", help="the cell labels to refine (jointseg's, a vendor's, sopa's)")
    cells.add_argument("--shapes-key", help="or the cell polygons to refine (e.g. a vendor's cell_boundaries)")
    p.add_argument("--image-key", default=None, help="the stain the labels share a pixel grid with")
    p.add_argument("--points-key", default=None, help="transcripts (default: the only points)")
    p.add_argument("--nuclei-key", default="nuclei", help="nuclei labels, if present: the cells' anchors")
    p.add_argument("--coordinate-system", default="global")
    p.add_argument("--microns-per-unit", type=float, default=None, help="microns in one unit (see jg.pp.set_units)")
    p.add_argument("--smoothness", type=float, default=0.85, help="higher: rounder cells; lower: follow transcripts")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--key-added", default="refined_labels", help="name of the refined labels")
    p.add_argument("--boundaries-key", default="refined_boundaries", help="name of their polygons")
    p.add_argument("--table-key", default="refined_table", help="name of their cells x genes table")
    p.add_argument("--block-size", type=int, default=None, help="tile edge in pixels (default: 2048)")
    p.add_argument("--resume", action="store_true", help="reuse the blocks of an interrupted run with this OUTPUT")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and existing result keys")
    p.set_defaults(func=_cmd_refine)
    p = sub.add_parser("demo", help="run the pipeline on the real Xenium breast crop")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--subset", default="full", choices=["full", "small"])
    p.add_argument("--method", default="expand_nuclei", choices=sorted(_methods()))
    p.add_argument("--steps", type=int, default=None, help="training steps per round (network methods)")
    p.add_argument("--no-refine", action="store_true", help="the method's cells as they are (no jg.seg.refine)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jointseg`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except (KeyError, ValueError, TypeError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"jointseg: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
