"""Params loading: a params.yaml section into its frozen config dataclass, unknown keys refused."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"params file {str(p)!r} not found: run from the project root or pass --params")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {str(p)!r} must hold a mapping of sections")
    return data


def config_from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """Build the frozen dataclass ``cls`` from a params section; unknown keys raise.

    A misspelt key silently falling back to its default is the classic way a run trains
    something else than intended, so it is an error naming the key and the section.
    """
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(names)}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


