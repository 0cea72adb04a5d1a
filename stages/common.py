"""Helpers shared by the stage commands: the params-section registry and one-line CLI errors."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# params.yaml section -> its config class ("module:Class", imported only when the stage runs, so
# `hpekd --help` stays fast). The one map from a section to its class: every stage and the
# params tests use it.
SECTIONS: dict[str, str] = {
    "synthesize": "pipeline.synth.generate:SynthConfig",
    "index": "pipeline.manifest.spec:IndexConfig",
    "relabel": "pipeline.relabel.job:RelabelConfig",
    "train_teacher": "pipeline.training.stage1:Stage1Config",
    "evaluate": "pipeline.evaluation.evaluate:EvalConfig",
    "teacher_labels": "pipeline.teacher.job:TeacherLabelsConfig",
    "ensemble_grid": "pipeline.evaluation.ensemble_grid:EnsembleGridConfig",
    "train_student": "pipeline.training.stage2:StudentConfig",
}


def section_class(section: str) -> type:
    if section not in SECTIONS:
        raise ValueError(f"unknown params section {section!r}; known sections: {sorted(SECTIONS)}")
    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)


def load_config(params_path: str, section: str, required: bool = False, **overrides: Any) -> Any:
    """The config of ``section`` in ``params_path``, with CLI ``overrides`` applied on top.

    The one override style of every stage: an option left unset (``None``) keeps the params
    value; a set option replaces it before validation, so it is checked like a params value.
    ``required``: a missing section is an error instead of meaning "all defaults".
    """
    from pipeline.core.config import config_from_mapping, load_params

    params = load_params(params_path)
    values = params.get(section)
    if values is None and required:
        raise ValueError(f"{params_path} has no {section!r} section")
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"{params_path}: section {section!r} must be a mapping of keys, got {type(values).__name__}")
    merged = {**(values or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return config_from_mapping(section_class(section), merged, f"{params_path} section {section!r}")


def user_errors(func: F) -> F:
    """Report ``ValueError``/``FileNotFoundError`` as a one-line ``Error: ...`` with exit 1.

    Library code raises these at its boundaries with a message naming the file or sample
    and what was expected; a traceback would only bury that message.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


params_option = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="params.yaml to read this stage's section from.",
)
