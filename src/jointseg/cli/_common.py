"""What the ``jointseg`` subcommands share: reading inputs, running a method, progress, summaries."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dask.callbacks import Callback
from spatialdata import SpatialData
from tqdm.auto import tqdm

#: The methods that train a network (``jointseg train``, ``--model``, ``--save-model``).
NETWORK_METHODS = ("genesegnet", "segjointgene", "sslcst")


def methods() -> dict[str, Callable]:
    """The segmentation methods by name."""
    from jointseg import seg

    return {
        "expand_nuclei": seg.expand_nuclei,
        "genesegnet": seg.genesegnet,
        "segjointgene": seg.segjointgene,
        "sslcst": seg.sslcst,
    }


def trainers() -> dict[str, Callable]:
    """The training function of each network method."""
    from jointseg import seg

    return {"genesegnet": seg.train_genesegnet, "segjointgene": seg.train_segjointgene, "sslcst": seg.train_sslcst}


class _DaskProgress(Callback):
    """One transient tqdm bar per dask computation of at least ``min_tasks`` tasks (the tiled steps)."""

    def __init__(self, desc: str, *, min_tasks: int = 16):
        super().__init__()
        self._desc, self._min_tasks, self._bar = desc, min_tasks, None

    def _start_state(self, dsk, state) -> None:
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        if total >= self._min_tasks:
            self._bar = tqdm(total=total, desc=self._desc, unit="task", leave=False)

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _finish(self, dsk, state, errored) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def step(desc: str, *, quiet: bool) -> Iterator[None]:
    """Progress bars named ``desc`` for the tiled computations inside (none when ``quiet``)."""
    with contextlib.nullcontext() if quiet else _DaskProgress(desc):
        yield


def method_options(method: str, args: argparse.Namespace) -> dict:
    """The network options given on the command line that ``method`` takes; an option given
    explicitly to a method that does not take it is an error.
    """
    accepted = inspect.signature(methods()[method]).parameters
    options = {
        "device": args.device, "seed": args.seed, "steps": args.steps, "model": args.model,
        "save_model": getattr(args, "save_model", None), "progress": False if args.quiet else None,
    }  # fmt: skip
    explicit = {"steps", "model", "save_model"}
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in accepted:
            out[name] = value
        elif name in explicit:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to method {method!r}.")
    return out


def check_inputs(sdata: SpatialData, image_key: str | None, points_key: str | None) -> tuple[str, str]:
    """Resolve the image and points keys and check the points carry genes; return the keys."""
    from jointseg._core.transcripts import feature_key
    from jointseg._core.utils import resolve_key

    image_key = resolve_key(sdata, "images", image_key)
    points_key = resolve_key(sdata, "points", points_key)
    feature_key(sdata, points_key)
    return image_key, points_key


def ensure_nuclei(
    sdata: SpatialData,
    *,
    image_key: str,
    channel: int | str | None,
    coordinate_system: str,
    block_size: int | None,
    overwrite: bool,
    quiet: bool = False,
) -> float:
    """Detect nuclei unless ``sdata`` has them (or ``overwrite``); return the wall time in seconds."""
    import jointseg as jg

    start = time.perf_counter()
    if "nuclei" not in sdata.labels or overwrite:
        with step("nuclei", quiet=quiet):
            jg.pp.nuclei(
                sdata, image_key=image_key, channel=channel, coordinate_system=coordinate_system, overwrite=overwrite,
                **({"block_size": block_size} if block_size is not None else {}),
            )  # fmt: skip
    return time.perf_counter() - start


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
    quiet: bool = False,
    **method_kwargs,
) -> dict[str, float]:
    """Nuclei (unless present) then ``method``; returns wall times of the steps in seconds.
    ``channel`` picks the stain of a multichannel image, for the nuclei and for methods that read it;
    ``block_size`` (pixels) sets the tiling of the nuclei and of methods that take it; ``refine``
    (None: the method's default) refines the cells by their expression (see :func:`jointseg.seg.refine`).
    """
    available = methods()
    if method not in available:
        raise KeyError(f"Unknown method {method!r}; available: {sorted(available)}.")
    image_key, points_key = check_inputs(sdata, image_key, points_key)
    accepted = inspect.signature(available[method]).parameters
    if channel is not None and "channel" in accepted:
        method_kwargs["channel"] = channel
    if block_size is not None and "block_size" in accepted:
        method_kwargs["block_size"] = block_size
    nuclei_s = ensure_nuclei(
        sdata, image_key=image_key, channel=channel, coordinate_system=coordinate_system, block_size=block_size,
        overwrite=overwrite, quiet=quiet,
    )  # fmt: skip
    times = {"nuclei_s": nuclei_s}
    start = time.perf_counter()
    if refine is not None:
        method_kwargs["refine"] = refine
    with step(method, quiet=quiet):
        available[method](
            sdata, image_key=image_key, points_key=points_key, coordinate_system=coordinate_system,
            overwrite=overwrite, **method_kwargs,
        )  # fmt: skip
    times["segmentation_s"] = time.perf_counter() - start
    return times


def parse_channel(channel: str | None) -> int | str | None:
    """A ``--channel`` value: an index when it is a number, else a channel name."""
    return int(channel) if channel is not None and channel.isdigit() else channel


def read_input(path: str | Path, args: argparse.Namespace, output: Path | None = None) -> SpatialData:
    """The input store, detached (never written into), with ``--microns-per-unit`` applied;
    ``output`` is checked first (it must differ from the input and not exist unless ``--overwrite``).
    """
    import jointseg as jg

    if output is not None:
        if output.exists() and not args.overwrite:
            raise FileExistsError(f"Output {output} exists; pass --overwrite to replace it.")
        if output.resolve() == Path(path).resolve():
            raise ValueError("OUTPUT must differ from INPUT: jointseg never writes into its input store.")
    sdata = jg.io.read_zarr(path)
    if args.microns_per_unit is not None:
        jg.pp.set_units(sdata, args.microns_per_unit, coordinate_system=args.coordinate_system)
    return sdata


def print_summary(
    name: str, sdata: SpatialData, table_key: str, seconds: float, out: Path, *, refined: bool = False
) -> None:
    """One line: cells, assigned fraction, transcripts per cell, time and output."""
    import jointseg as jg

    summary = jg.metrics.assignment_summary(sdata[table_key], table_key=table_key)
    how = ", refined by expression" if refined else ""
    print(
        f"{name}: {summary['n_cells']} cells{how}, {summary['fraction_assigned']:.1%} of transcripts assigned, "
        f"median {summary['median_transcripts_per_cell']:.0f} per cell ({seconds:.1f} s) -> {out}"
    )


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The options that say where the stain and the transcripts are and what units they use."""
    p.add_argument("--image-key", default=None, help="nuclei stain image (default: the only image)")
    p.add_argument("--points-key", default=None, help="transcripts (default: the only points)")
    p.add_argument("--coordinate-system", default="global")
    p.add_argument("--channel", default=None, help="stain channel of a multichannel image: name or index")
    p.add_argument(
        "--microns-per-unit",
        type=float,
        default=None,
        help="microns in one unit of the coordinate system (needed for CosMx; see jg.pp.set_units)",
    )


def add_network_options(p: argparse.ArgumentParser) -> None:
    """Device, seed and training length of the network methods."""
    p.add_argument("--device", default=None, help="torch device for network methods (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed for network methods")
    p.add_argument("--steps", type=int, default=None, help="training steps per round (network methods)")
