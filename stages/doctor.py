"""`hpekd doctor`: what decides the bytes on this machine (docs/reproducibility.md).

For each numeric library: whether the pin covers it and who set each of its variables (the pin,
or the environment — a host that sets ``OPENBLAS_CORETYPE`` itself keeps it), the kernel it
picked, and the installed versions against ``constraints.txt``. Two machines that print the same
kernels and versions give the same bytes; where they differ, this says which library to look at.
"""

from __future__ import annotations

import platform
from pathlib import Path

import click

from pipeline.core import kernels, numerics
from stages.common import user_errors

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@click.command()
@click.option("--constraints", "constraints_path", type=click.Path(dir_okay=False), default=None,
              help="Constraints file to compare versions with (default: the repository's constraints.txt).")
@user_errors
def cli(constraints_path: str | None) -> None:
    """Print the pinned state, kernel and version of each numeric library."""
    click.echo(f"cpu        {cpu_name()}")
    click.echo(f"numerics   {numerics.describe()}")
    for lib in kernels.libraries():
        click.echo(f"\n{lib.name}: {lib.status}")
        for line in lib.settings:
            click.echo(f"  {line}")
        click.echo(f"  kernel: {lib.kernel}")
    path = Path(constraints_path) if constraints_path else REPO / "constraints.txt"
    click.echo(f"\nversions (installed / {path.name}):")
    for name, have, want in kernels.versions(path):
        mark = "" if have == want or want == "not pinned" or have == "not installed" else "   <- differs"
        click.echo(f"  {name:24s} {have:16s} {want}{mark}")
