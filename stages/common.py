"""Helpers shared by the stage commands: turning library errors into one-line CLI errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


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
