"""``jointseg segment`` (one slide, or several with one model) and ``jointseg refine``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from jointseg.cli._common import (
    NETWORK_METHODS,
    add_input_options,
    add_network_options,
    method_options,
    methods,
    parse_channel,
    print_summary,
    read_input,
    run_pipeline,
    step,
)

logger = logging.getLogger("jointseg")


def _pairs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(input, output) pairs: ``INPUT OUTPUT``, or ``INPUT... --out-dir DIR`` (outputs named after inputs)."""
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise ValueError("Give INPUT OUTPUT, or several inputs with --out-dir DIR.")
        return [(args.paths[0], Path(args.paths[1]))]
    outputs = [Path(args.out_dir) / Path(p).name for p in args.paths]
    if len(set(outputs)) < len(outputs):
        raise ValueError("Inputs given with --out-dir must have different names: their outputs are named after them.")
    return list(zip(args.paths, outputs, strict=True))


def _segment_one(source: str, out: Path, args: argparse.Namespace, model_options: dict) -> None:
    import jointseg as jg

    sdata = read_input(source, args, out)
    # Slide-sized results go block by block to a checkpoint beside the output; --resume reuses the
    # blocks a killed run finished. They are read from there (not held in memory) until the output
    # is written inside the block; the checkpoint is then removed.
    with jg.io.checkpoint(Path(f"{out}.jointseg-checkpoint"), recover=args.resume, in_memory=False):
        times = run_pipeline(
            sdata, image_key=args.image_key, points_key=args.points_key, method=args.method,
            coordinate_system=args.coordinate_system, channel=parse_channel(args.channel),
            block_size=args.block_size, overwrite=args.overwrite, refine=args.refine, quiet=args.quiet,
            key_added=args.labels_key, shapes_key=args.shapes_key, table_key=args.table_key, **model_options,
        )  # fmt: skip
        with step("writing", quiet=args.quiet):
            jg.io.write_zarr(sdata, out, overwrite=args.overwrite)
    refined = sdata[args.table_key].uns["jointseg"][args.labels_key].get("refine") is not None
    print_summary(args.method, sdata, args.table_key, sum(times.values()), out, refined=refined)


def cmd_segment(args: argparse.Namespace) -> None:
    """Segment each input; a network trained on the first input (unless ``--model``) is applied to the rest."""
    import jointseg as jg

    pairs = _pairs(args)
    if args.device is not None:
        jg._core.utils.select_device(args.device)  # fail early on an unknown device string
    options = method_options(args.method, args)
    for out in (o for _, o in pairs):
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"Output {out} exists; pass --overwrite to replace it.")
    if args.out_dir is not None:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    shared_model = len(pairs) > 1 and args.method in NETWORK_METHODS and args.model is None
    if shared_model:  # train once, on the first slide, and apply that model to the others
        options["save_model"] = args.save_model or str(Path(args.out_dir) / f"{args.method}_model.pt")
    for k, (source, out) in enumerate(pairs):
        if shared_model and k == 1:
            options = {**options, "model": options.pop("save_model")}
            print(f"applying the model trained on {pairs[0][0]} ({options['model']}) to the other inputs")
        _segment_one(source, out, args, options)


def cmd_refine(args: argparse.Namespace) -> None:
    """Refine the labels or polygons of a store by each cell's expression."""
    import jointseg as jg

    out = Path(args.output)
    sdata = read_input(args.input, args, out)
    start = time.perf_counter()
    with jg.io.checkpoint(Path(f"{out}.jointseg-checkpoint"), recover=args.resume, in_memory=False):
        with step("refine", quiet=args.quiet):
            jg.seg.refine(
                sdata, labels_key=args.labels_key, shapes_key=args.shapes_key, image_key=args.image_key,
                points_key=args.points_key, nuclei_key=args.nuclei_key, smoothness=args.smoothness,
                background_border=args.background_border, seed=args.seed,
                key_added=args.key_added, boundaries_key=args.boundaries_key, table_key=args.table_key,
                coordinate_system=args.coordinate_system, overwrite=args.overwrite,
                **({"block_size": args.block_size} if args.block_size is not None else {}),
            )  # fmt: skip
        with step("writing", quiet=args.quiet):
            jg.io.write_zarr(sdata, out, overwrite=args.overwrite)
    print_summary("refine", sdata, args.table_key, time.perf_counter() - start, out)


def add_parsers(sub: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``segment`` (and its alias ``run``) and ``refine``."""
    p = sub.add_parser(
        "segment",
        parents=parents,
        aliases=["run"],
        help="segment cells in SpatialData zarr stores (nuclei, cells, polygons, table)",
        description="Segment INPUT into OUTPUT, or several inputs into --out-dir with one model: a network "
        "method trains on the first input (or takes --model) and applies that model to the others.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="INPUT OUTPUT, or INPUT [INPUT ...] with --out-dir")
    p.add_argument("--out-dir", default=None, help="folder for the outputs of several inputs (named after them)")
    add_input_options(p)
    p.add_argument("--method", default="expand_nuclei", choices=sorted(methods()))
    add_network_options(p)
    p.add_argument("--model", default=None, help="saved model to apply instead of training (network methods)")
    p.add_argument("--save-model", default=None, help="save the trained model here (network methods)")
    p.add_argument("--labels-key", default="cell_labels", help="name of the new cell labels")
    p.add_argument("--shapes-key", default="cell_boundaries", help="name of the new cell polygons")
    p.add_argument("--table-key", default="table", help="name of the new cells x genes table")
    p.add_argument("--block-size", type=int, default=None, help="tile edge in pixels (default: 2048)")
    p.add_argument("--resume", action="store_true", help="reuse the blocks finished by an interrupted run")
    p.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine the cells by their expression (jg.seg.refine); default: on for the network methods, "
        "off for expand_nuclei (the stain-only baseline)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and existing result keys")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser(
        "refine", parents=parents, help="refine any cell labels by each cell's expression (jg.seg.refine)"
    )
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
    p.add_argument(
        "--background-border", type=float, default=0.75,
        help="cost of a cell's border with the background relative to one with a cell (lower: gaps between cells open)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--key-added", default="refined_labels", help="name of the refined labels")
    p.add_argument("--boundaries-key", default="refined_boundaries", help="name of their polygons")
    p.add_argument("--table-key", default="refined_table", help="name of their cells x genes table")
    p.add_argument("--block-size", type=int, default=None, help="tile edge in pixels (default: 2048)")
    p.add_argument("--resume", action="store_true", help="reuse the blocks of an interrupted run with this OUTPUT")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and existing result keys")
    p.set_defaults(func=cmd_refine)
