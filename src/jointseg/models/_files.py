"""Versioned model files: a dict of plain settings plus float32 weights, read with ``weights_only``."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn


def save_model_file(path: str | os.PathLike, *, fmt: str, version: int, network: nn.Module, **settings: Any) -> None:
    """Write ``settings`` and the network's weights (on the CPU) to ``path``."""
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save({"format": fmt, "version": version, **settings, "state_dict": state}, path)


def load_model_file(path: str | os.PathLike, *, fmt: str, version: int, kind: str) -> dict[str, Any]:
    """Read a file written by :func:`save_model_file`; no code is unpickled (``weights_only``)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ValueError(f"{os.fspath(path)!r} is not a jointseg {kind} model file.")
    if blob["version"] > version:
        raise ValueError(
            f"{os.fspath(path)!r} has model format version {blob['version']}; this jointseg reads up to "
            f"{version}. Upgrade jointseg."
        )
    return blob
