"""Complete params for tests: the project's default (configs/default.yaml) with a test's values
on top, so a test states only what it changes and every stage still sees every key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.overlay import merge, read_yaml_mapping

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def full_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default params with ``overrides`` merged in (mappings key by key, other values whole;
    an unknown key is an error, as for an overlay)."""
    params, _ = merge(read_yaml_mapping(DEFAULT, "default params"), dict(overrides or {}), "test overrides")
    return params


def write_params(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`full_params` to ``path``; returns it."""
    path = Path(path)
    path.write_text(yaml.safe_dump(full_params(overrides), sort_keys=False))
    return path
