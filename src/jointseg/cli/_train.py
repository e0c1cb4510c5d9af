"""``jointseg train``: train a network method on one slide and save the model for ``segment --model``."""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from jointseg.cli._common import (
    NETWORK_METHODS,
    add_input_options,
    add_network_options,
    check_inputs,
    ensure_nuclei,
    parse_channel,
    read_input,
    step,
    trainers,
)


def cmd_train(args: argparse.Namespace) -> None:
    """Nuclei (if the input has none), then the method's self-training; the model is saved to MODEL."""
    import jointseg as jg

    model_path = Path(args.model)
    if model_path.exists() and not args.overwrite:
        raise FileExistsError(f"Model {model_path} exists; pass --overwrite to replace it.")
    if args.device is not None:
        jg._core.utils.select_device(args.device)
    sdata = read_input(args.input, args)
    image_key, points_key = check_inputs(sdata, args.image_key, args.points_key)
    channel = parse_channel(args.channel)
    start = time.perf_counter()
    # Nuclei are computed in memory here: the input store is never written into.
    ensure_nuclei(
        sdata, image_key=image_key, channel=channel, coordinate_system=args.coordinate_system,
        block_size=args.block_size, overwrite=False, quiet=args.quiet,
    )  # fmt: skip
    trainer = trainers()[args.method]
    options = {"steps": args.steps} if args.steps is not None else {}
    if "channel" in inspect.signature(trainer).parameters:  # SegJointGene does not read the stain
        options["channel"] = channel
    with step(f"training {args.method}", quiet=args.quiet):
        model = trainer(
            sdata, image_key=image_key, points_key=points_key, device=args.device, seed=args.seed,
            coordinate_system=args.coordinate_system, progress=not args.quiet, **options,
        )  # fmt: skip
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    print(
        f"{args.method}: trained on {args.input} in {time.perf_counter() - start:.1f} s -> {model_path} "
        f"(apply with: jointseg segment INPUT OUTPUT --method {args.method} --model {model_path})"
    )


def add_parsers(sub: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        parents=parents,
        help="train a network method on one slide and save the model (then: segment --model)",
        description="Train once on one slide; apply the model to other slides with "
        "`jointseg segment INPUT OUTPUT --method M --model MODEL`.",
    )
    p.add_argument("input", help="input SpatialData zarr store (never modified)")
    p.add_argument("model", help="where to save the trained model (.pt)")
    p.add_argument("--method", required=True, choices=NETWORK_METHODS)
    add_input_options(p)
    add_network_options(p)
    p.add_argument("--block-size", type=int, default=None, help="tile edge in pixels for the nuclei (default: 2048)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL")
    p.set_defaults(func=cmd_train)
