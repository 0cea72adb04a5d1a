"""The ``hpekd`` console script: a click group whose subcommands live in ``stages/*.py``.

Each stage module exposes one click command (or group) named ``cli``; they are discovered
here so adding a stage never touches this file. Modules are imported lazily, only when their
command is invoked, so ``hpekd --help`` stays fast.
"""

from __future__ import annotations

from pipeline.core import numerics

# before anything imports numpy, OpenCV or torch (docs/design.md §10, docs/reproducibility.md); a bad
# HPEKD_NUMERICS / HPEKD_THREADS or a variable contradicting the pin is one warning line, the run starts
numerics.pin()

import importlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402

import click  # noqa: E402

import stages  # noqa: E402

_SKIP = {"cli", "common"}


def _modules() -> dict[str, str]:
    names = {}
    for info in pkgutil.iter_modules(stages.__path__):
        if info.name.startswith("_") or info.name in _SKIP:
            continue
        names[info.name.replace("_", "-")] = f"stages.{info.name}"
    return names


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_modules())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _modules().get(name)
        if module is None:
            return None
        cmd = importlib.import_module(module).cli
        cmd.name = name
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (also: HPEKD_DEBUG=1).")
def main(verbose: bool, debug: bool) -> None:
    """hpekd: head pose estimation boosted by knowledge distillation.

    Each subcommand is one DVC stage (see dvc.yaml) or a tool around them. Stages read their
    own section of params.yaml; run `dvc repro` to rebuild the whole pipeline.
    """
    if debug:
        os.environ["HPEKD_DEBUG"] = "1"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("hpekd").debug("%s", numerics.describe())


if __name__ == "__main__":
    main()
