"""Method configs: the options few users change, as frozen dataclasses beside the dozen keyword
arguments a user tunes, and the bridge from the keyword arguments of jointseg 0.1.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, TypeVar

C = TypeVar("C")


def config_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON (nested dataclasses as dicts, tuples as lists), for ``uns`` and model files.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     widths: tuple[int, ...] = (8, 16)
    >>> config_dict(Demo())
    {'widths': [8, 16]}

    """

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def resolve_config(config_class: type[C], config: C | None, legacy: dict[str, Any], *, method: str) -> C:
    """``config`` (default: ``config_class()``) with the options passed the 0.1 way, as keyword
    arguments of the method, applied on top, and a :class:`FutureWarning` naming them.

    Raises
    ------
    TypeError
        For a keyword that is neither a method argument nor a field of ``config_class``.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     lr: float = 1e-3
    >>> resolve_config(Demo, None, {}, method="demo")
    Demo(lr=0.001)

    """
    config = config_class() if config is None else config
    if not isinstance(config, config_class):
        raise TypeError(f"{method}: config must be a {config_class.__name__}, got {type(config).__name__}.")
    if not legacy:
        return config
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(legacy) - fields)
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments {unknown}.")
    warnings.warn(
        f"{method}: pass {sorted(legacy)} as config={config_class.__name__}(...); as keyword arguments of the "
        "method they are deprecated.",
        FutureWarning,
        stacklevel=3,
    )
    return dataclasses.replace(config, **legacy)


def check_positive(config: Any, *names: str) -> None:
    """Raise a :class:`ValueError` naming the first of ``names`` whose value in ``config`` is not > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}.")
