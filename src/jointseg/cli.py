"""The ``jointseg`` command line: segment a SpatialData zarr store, or run the demo."""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
    **method_kwargs,
) -> dict[str, float]:
    """Nuclei (unless present) then ``method``; returns wall times of the steps in seconds.
    ``channel`` picks the stain of a multichannel image, for the nuclei and for methods that read it;
    ``block_size`` (pixels) sets the tiling of the nuclei and of methods that take it.
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


def _cmd_segment(args: argparse.Namespace) -> None:
    import jointseg as jg

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"Output {out} exists; pass --overwrite to replace it.")
    if out.resolve() == Path(args.input).resolve():
        raise ValueError("OUTPUT must differ from INPUT: jointseg never writes into its input store.")
    sdata = jg.io.read_zarr(args.input)
    if args.microns_per_unit is not None:
        jg.pp.set_units(sdata, args.microns_per_unit, coordinate_system=args.coordinate_system)
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
            key_added=args.labels_key,
            shapes_key=args.shapes_key,
            table_key=args.table_key,
            **method_options(args.method, args),
        )
        jg.io.write_zarr(sdata, out, overwrite=args.overwrite)
    summary = jg.metrics.assignment_summary(sdata[args.table_key], table_key=args.table_key)
    print(
        f"{args.method}: {summary['n_cells']} cells, {summary['fraction_assigned']:.1%} of transcripts assigned, "
        f"median {summary['median_transcripts_per_cell']:.0f} per cell "
        f"({sum(times.values()):.1f} s) -> {out}"
    )


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
    times = run_pipeline(sdata, image_key="morphology", points_key="transcripts", method=args.method, **options)
    table = sdata["table"]
    summary = jg.metrics.assignment_summary(table)
    markers = jg.datasets.markers("breast")
    pairs = jg.metrics.exclusive_marker_pairs(markers, genes=list(table.var_names))
    summary["mecr"] = jg.metrics.mecr(table, pairs)
    fig, axes = plt.subplots(1, 2, figsize=(16, 6.5))
    jg.pl.segmentation(sdata, image_key="morphology", nuclei_key="nuclei", ax=axes[0])
    axes[0].set_title(f"{args.method}: {summary['n_cells']} cells (red), nuclei (cyan)")
    h, w = sdata["morphology"].shape[-2:]
    zoom = (h // 2 - 200, h // 2 + 200, w // 2 - 300, w // 2 + 300)
    jg.pl.segmentation(sdata, image_key="morphology", points_key="transcripts", region=zoom, ax=axes[1])
    axes[1].set_title("zoom: transcripts assigned (gold) / unassigned (grey)")
    fig.tight_layout()
    figure = out / "segmentation.png"
    fig.savefig(figure, dpi=110)
    if "jg_cid_by_type" in table.varm:  # methods that rank genes (segjointgene)
        ax = jg.pl.gene_scores(sdata)
        ax.figure.tight_layout()
        ax.figure.savefig(out / "gene_scores.png", dpi=110)
        top = table.var.sort_values("jg_cid_rank").index[:10]
        print("top genes by CID score:", ", ".join(top), f"(figure: {out / 'gene_scores.png'})")
    jg.io.write_zarr(sdata, out / "demo.zarr", overwrite=True)
    rows = [
        ("nuclei found", f"{int(sdata['nuclei'].max())}"),
        ("cells", f"{summary['n_cells']}"),
        ("transcripts assigned", f"{summary['fraction_assigned']:.1%}"),
        ("median transcripts / cell", f"{summary['median_transcripts_per_cell']:.0f}"),
        ("median cell area (um^2)", f"{summary['median_area_um2']:.1f}"),
        (f"MECR ({len(pairs)} exclusive marker pairs)", f"{summary['mecr']:.3f}"),
        ("wall time nuclei / cells (s)", f"{times['nuclei_s']:.1f} / {times['segmentation_s']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"  {name:<{width}}  {value}" for name, value in rows))
    print(f"Wrote {out / 'demo.zarr'} and {figure}")


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
        p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and existing result keys")
        p.set_defaults(func=_cmd_segment)
    p = sub.add_parser("demo", help="run the pipeline on the real Xenium breast crop")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--subset", default="full", choices=["full", "small"])
    p.add_argument("--method", default="expand_nuclei", choices=sorted(_methods()))
    p.add_argument("--steps", type=int, default=None, help="training steps per round (network methods)")
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
