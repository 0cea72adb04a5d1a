"""``hpekd checkpoint``: tools around checkpoint files (``upgrade``: an old pickle to plain data)."""

from __future__ import annotations

import json

import click

from stages.common import user_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Checkpoint files: hpekd reads them as data and never runs code from them (docs/security.md)."""


@cli.command(help="Rewrite OLD, a checkpoint or state dict that hpekd refuses to read because it holds Python "
                  "objects (e.g. written by an earlier hpekd), as NEW in plain data (tensors, dicts, lists, "
                  "strings, numbers). Reading OLD unpickles it, which can run any code it holds: pass --trust "
                  "only for a file from a source you trust. NEW is read back with the safe loader.")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--trust", is_flag=True, help="I trust where OLD came from: load it unsafely, once, to convert it.")
@user_errors
def upgrade(old: str, new: str, trust: bool) -> None:
    from pipeline.model.upgrade import upgrade_checkpoint
    from stages.common import check_outputs

    check_outputs(new=new)
    click.echo(json.dumps(upgrade_checkpoint(old, new, trust=trust)))
