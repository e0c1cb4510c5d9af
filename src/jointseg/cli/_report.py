"""``jointseg report``: the quality summary and QC figure of a segmentation in a store."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from jointseg.cli._common import step

#: Cell calling loads the labels whole (an evaluation metric for crops): larger labels skip it.
_MAX_CALLING_PIXELS = 100_000_000

_ROWS = {
    "n_cells": ("cells", "{:,.0f}"),
    "fraction_assigned": ("transcripts assigned", "{:.1%}"),
    "median_transcripts_per_cell": ("median transcripts per cell", "{:.0f}"),
    "mecr": ("MECR (lower: fewer mixed cells)", "{:.4f}"),
    "cell_calling_5": ("cell calling (inside / 5 px ring)", "{:.1f}"),
    "median_area_um2": ("median cell area (um2)", "{:.1f}"),
    "median_convexity": ("median convexity", "{:.3f}"),
    "median_elongation": ("median elongation", "{:.3f}"),
}


def _marker_table(markers: str) -> pd.DataFrame:
    import jointseg as jg

    if Path(markers).is_file():
        table = pd.read_csv(markers)
        missing = {"cell_type", "gene", "kind"} - set(table.columns)
        if missing:
            raise ValueError(f"Markers {markers} need columns cell_type, gene, kind; missing {sorted(missing)}.")
        return table
    return jg.datasets.markers(markers)


def cmd_report(args: argparse.Namespace) -> None:
    """Print one segmentation's metrics and write its QC figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import jointseg as jg
    from jointseg._core.outputs import annotated_element, cell_shapes_key
    from jointseg._core.utils import labels_2d

    sdata = jg.io.read_zarr(args.store)
    if args.table_key not in sdata.tables:
        raise KeyError(f"No table {args.table_key!r} in {args.store}; tables: {list(sdata.tables)}.")
    table = sdata[args.table_key]
    region = annotated_element(table)
    labels_key = region if region in sdata.labels else None
    if labels_key is not None and labels_2d(sdata, labels_key).size > _MAX_CALLING_PIXELS:
        print(f"(cell calling left out: it loads the labels whole, and {labels_key!r} is a whole slide)")
        labels_key = None
    shapes_key = args.shapes_key or cell_shapes_key(sdata, table)
    genes = list(table.var_names)
    pairs = jg.metrics.exclusive_marker_pairs(_marker_table(args.markers), genes=genes)
    with step("report", quiet=args.quiet):
        row = jg.metrics.segmentation_report(
            sdata, pairs=pairs, labels_key=labels_key, shapes_key=shapes_key,
            table_key=args.table_key, points_key=args.points_key,
        )  # fmt: skip
    print(f"{args.store} :: {args.table_key} (cells {labels_key or shapes_key})")
    for key, (name, fmt) in _ROWS.items():
        if key in row:
            print(f"  {name:<34} {fmt.format(row[key])}")
    print(f"  (MECR over {len(pairs)} mutually exclusive marker pairs of {args.markers!r})")
    figure = Path(args.figure) if args.figure else Path(f"{Path(args.store).with_suffix('')}_qc.png")
    points_key = args.points_key or (next(iter(sdata.points)) if len(sdata.points) == 1 else None)
    fig = jg.pl.qc(sdata, table_key=args.table_key, shapes_key=shapes_key, points_key=points_key)
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print(f"QC figure: {figure}")


def add_parsers(sub: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``report``."""
    p = sub.add_parser("report", parents=parents, help="print a segmentation's quality summary and write its QC figure")
    p.add_argument("store", help="SpatialData zarr store with a segmentation (jointseg's or another tool's)")
    p.add_argument("--table-key", default="table", help="the segmentation's table")
    p.add_argument("--shapes-key", default=None, help="its polygons (default: the ones the table records)")
    p.add_argument("--points-key", default=None, help="transcripts (default: the only points)")
    p.add_argument(
        "--markers", default="breast", help="marker set for MECR: a shipped tissue or a CSV (cell_type, gene, kind)"
    )
    p.add_argument("--figure", default=None, help="QC figure path (default: STORE_qc.png beside the store)")
    p.set_defaults(func=cmd_report)
