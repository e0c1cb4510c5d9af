"""The base of jointseg's trained models: a torch network, the settings needed to apply it to
another slide, a training log, and versioned files read without unpickling code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

#: Fields of every trained model that are not written as settings.
_NOT_SETTINGS = ("network", "device")


@dataclass
class TrainedModel:
    """A trained network with what is needed to apply it: the base of every model container.

    A subclass is a dataclass that adds its settings as fields (plain values, lists, dicts or
    NumPy arrays) and sets the class variables: ``FORMAT`` (the file's identity), ``KIND`` (its name
    in messages), ``NETWORK`` (the :class:`torch.nn.Module` class, built from ``NETWORK.CONFIG``, a
    dataclass with ``to_dict``/``from_dict``), ``FORMAT_VERSION`` (bumped when the file layout
    changes) and ``MIN_FORMAT_VERSION`` (the oldest layout still read). :meth:`save` writes every
    field but the network and the device, plus the network's config and float32 weights;
    :meth:`load` reads them back on any device.

    Parameters
    ----------
    network
        The torch network.
    training_log
        What training did (losses, rounds, settings).
    device
        Where the network runs.

    """

    FORMAT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int] = 1
    MIN_FORMAT_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str]
    NETWORK: ClassVar[type[nn.Module]]
    CONFIG: ClassVar[type]

    network: nn.Module
    training_log: dict[str, Any] = field(default_factory=dict, kw_only=True)
    device: str = field(default="cpu", kw_only=True)

    @classmethod
    def build_network(cls, config) -> nn.Module:
        """An untrained network of this model's kind (on the CPU)."""
        return cls.NETWORK(config)

    def to(self, device: str) -> Self:
        """Move the network to ``device`` (in place); returns self."""
        self.network.to(device)
        self.device = device
        return self

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The network's float32 output in eval mode, under float16 autocast on CUDA (call it under
        :func:`torch.inference_mode`).
        """
        self.network.eval()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")):
            return self.network(*args, **kwargs).float()

    def settings(self) -> dict[str, Any]:
        """Every field but the network and the device (arrays as float64 tensors, as files hold them)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name not in _NOT_SETTINGS:
                value = getattr(self, f.name)
                out[f.name] = (
                    torch.from_numpy(np.asarray(value, np.float64)) if isinstance(value, np.ndarray) else value
                )
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the settings, the network's config and its weights (float32, on the CPU) to ``path``."""
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        blob = {"format": self.FORMAT, "version": self.FORMAT_VERSION, "config": self.network.config.to_dict()}
        torch.save({**blob, **self.settings(), "state_dict": state}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> Self:
        """Read a model written by :meth:`save` (no code is unpickled: ``weights_only`` loading).

        Raises
        ------
        ValueError
            If ``path`` is not a model file of this kind, or was written by a newer jointseg, or by
            an older one whose network this one no longer reads.

        """
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != cls.FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a jointseg {cls.KIND} model file.")
        if blob["version"] > cls.FORMAT_VERSION:
            raise ValueError(
                f"{os.fspath(path)!r} has model format version {blob['version']}; this jointseg reads up to "
                f"{cls.FORMAT_VERSION}. Upgrade jointseg."
            )
        if blob["version"] < cls.MIN_FORMAT_VERSION:
            raise ValueError(
                f"{os.fspath(path)!r} has model format version {blob['version']}, from an older jointseg whose "
                f"{cls.KIND} network this one no longer reads (versions {cls.MIN_FORMAT_VERSION}-"
                f"{cls.FORMAT_VERSION}). Train the model again."
            )
        settings = {}
        for f in dataclasses.fields(cls):
            if f.name in _NOT_SETTINGS or (f.name not in blob and f.default is not dataclasses.MISSING):
                continue  # a setting added later, with a default: files written before lack it
            value = blob[f.name]
            settings[f.name] = value.numpy() if isinstance(value, torch.Tensor) else value
        network = cls.build_network(cls.CONFIG.from_dict(blob["config"]))
        network.load_state_dict(blob["state_dict"])
        return cls(network=network.eval(), **settings).to(device)
