"""Params loading: a params.yaml section into its frozen config dataclass.

Unknown keys are refused and every value is checked against its field's type before the
dataclass sees it, with one line naming the section, key, value and the expected type (a
misspelt key or a quoted number silently falling back to a default, or failing deep inside
training, is how a run ends up doing something else than intended).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")

# the one list of params keys and their default values (docs/design.md §1): the config dataclasses
# have no defaults of their own, so code outside a stage (tests, benchmarks, the Python API) builds
# a section from this file with the values it changes (:func:`default_config`)
DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"params file {str(p)!r} not found: run from the project root or pass --params")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {str(p)!r} must hold a mapping of sections")
    return data


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (tuple, list, Sequence):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return "[" + ", ".join(_describe(a) for a in args) + "]" if args else "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping ({hint.__name__})"
    return getattr(hint, "__name__", str(hint))


def _check(value: Any, hint: Any) -> tuple[bool, Any]:
    """(value fits ``hint``, the value to use). Numbers written with an exponent and no dot
    (``1e-4``) are strings to YAML 1.1; they are accepted where a float is expected."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for a in args:
            ok, v = _check(value, a)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            return False, value
        if len(args) == 2 and args[1] is Ellipsis:
            checked = [_check(v, args[0]) for v in value]
        elif args:
            if len(args) != len(value):
                return False, value
            checked = [_check(v, a) for v, a in zip(value, args)]
        else:
            return True, tuple(value)
        return all(ok for ok, _ in checked), tuple(v for _, v in checked)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping), value
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (Mapping, hint)), value
    return True, value  # anything else is left to the dataclass' own checks


# field metadata marking a key that a complete params file may leave out (a key set on the
# command line, or a retired key that must stay absent): ``field(..., metadata=OPTIONAL)``
OPTIONAL = {"optional": True}


def required_keys(cls: type) -> list[str]:
    """The keys a complete params section of ``cls`` must set: every field but the optional."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("optional")]  # type: ignore[arg-type]


def config_from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str,
                        require_all: bool = False) -> T:
    """Build the frozen dataclass ``cls`` from a params section; unknown keys and values of the
    wrong type raise ``ValueError`` naming ``where``, the key and the expected type.

    ``require_all``: every non-optional field must be given (a params file is complete: a key
    left out would otherwise take the dataclass default silently, which may not be the value
    the project's params say)."""
    if values is not None and not isinstance(values, Mapping):
        raise ValueError(f"{where} must be a mapping of keys, got {type(values).__name__} {values!r}")
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(names)}")
    if require_all:
        missing = [k for k in required_keys(cls) if k not in values]
        if missing:
            raise ValueError(
                f"{where} lacks key(s) {missing}: every key that shapes an output must be set (no silent "
                "default); write a complete params.yaml with `hpekd params apply [OVERLAY ...]`, or copy the "
                "key(s) from configs/default.yaml"
            )
    hints = typing.get_type_hints(cls)
    for key in list(values):
        ok, value = _check(values[key], hints.get(key, Any))
        if not ok:
            raise ValueError(
                f"{where}: {key} = {values[key]!r} is {type(values[key]).__name__}; expected {_describe(hints[key])}"
            )
        values[key] = value
    return cls(**values)


def default_section(section: str) -> dict[str, Any]:
    """Section ``section`` of configs/default.yaml, as written there."""
    params = load_params(DEFAULT_PARAMS)
    if not isinstance(params.get(section), Mapping):
        raise ValueError(f"{DEFAULT_PARAMS} has no section {section!r}")
    return dict(params[section])


def default_config(cls: type[T], section: str, **overrides: Any) -> T:
    """The config of ``section`` as configs/default.yaml has it, with ``overrides`` (checked like a
    params file: unknown keys and wrong types are refused)."""
    return config_from_mapping(cls, {**default_section(section), **overrides},
                               f"configs/default.yaml section {section!r} with {sorted(overrides)}", require_all=True)
