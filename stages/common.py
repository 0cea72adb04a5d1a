"""Helpers shared by the stage commands: the params-section registry and one-line CLI errors."""

from __future__ import annotations

import functools
import importlib
import os
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
# top-level params keys that are not a stage's section: the shape of the pipeline, read by
# dvc.yaml templating (and checked by `hpekd params check`)
# the student lists: one DVC stage pair per entry each (the role table, pipeline/evaluation/roles.py,
# names the same lists; tests/test_roles.py checks they agree)
STUDENT_LISTS = ("students", "students_control", "students_online", "students_soft")
OTHER_KEYS = ("run", "data_root", "synthetic", *STUDENT_LISTS)


def section_class(section: str) -> type:
    if section not in SECTIONS:
        raise ValueError(f"unknown params section {section!r}; known sections: {sorted(SECTIONS)}")
    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)


def load_config(params_path: str, section: str, **overrides: Any) -> Any:
    """The config of ``section`` in ``params_path``, with CLI ``overrides`` applied on top.

    The one override style of every stage: an option left unset (``None``) keeps the params
    value; a set option replaces it before validation, so it is checked like a params value.
    A missing section, or any unknown (e.g. misspelt) section in the file, is an error naming
    the known sections: a stage never runs silently on all-default settings.
    """
    from pipeline.core.config import config_from_mapping, load_params

    params = load_params(params_path)
    known = sorted(SECTIONS) + sorted(OTHER_KEYS)
    unknown = sorted(set(params) - set(SECTIONS) - set(OTHER_KEYS))
    if unknown:
        raise ValueError(f"{params_path}: unknown section(s) {unknown}; known sections: {known}")
    if section not in params:
        raise ValueError(f"{params_path} has no {section!r} section (known sections: {known}); "
                         "copy it from the project's params.yaml")
    values = params[section]
    if not isinstance(values, dict):
        raise ValueError(f"{params_path}: section {section!r} must be a mapping of keys, got {values!r}")
    merged = {**values, **{k: v for k, v in overrides.items() if v is not None}}
    return config_from_mapping(section_class(section), merged, f"{params_path} section {section!r}", require_all=True)


def check_outputs(inputs: tuple[str | None, ...] | list[str | None] = (), **paths: str | None) -> None:
    """Check every output file of a stage before any work starts (one line naming the path): no
    folder there, none of the stage's ``inputs`` (docs/outputs.md)."""
    from pipeline.core.io import check_output_path

    given = [p for p in inputs if p and "://" not in str(p)]
    for what, path in paths.items():
        if path and path != "-" and "://" not in str(path):
            check_output_path(path, what.replace("_", " "), given)


def debug_enabled() -> bool:
    return os.environ.get("HPEKD_DEBUG", "") not in ("", "0")


def user_errors(func: F) -> F:
    """Report any failure as a one-line ``Error: ...`` with exit 1 (no traceback).

    Library code raises ``ValueError`` at its boundaries with a message naming the file or
    sample and what was expected; a traceback would only bury that message. Anything else
    (an OSError, a library error) is reported the same way, with its type. ``hpekd --debug``
    or ``HPEKD_DEBUG=1`` shows the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the point: one line for the user
            if debug_enabled():
                raise
            raise click.ClickException(_one_line(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValueError | FileNotFoundError):
        msg = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        msg = f"{exc.strerror or exc.__class__.__name__}: {exc.filename!s}"
    else:
        msg = f"{exc.__class__.__name__}: {exc} (rerun with `hpekd --debug ...` for the traceback)"
    return msg


params_option = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="params.yaml to read this stage's section from.",
)
