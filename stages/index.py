"""`hpekd index`: read the configured datasets (params section `index`) into manifest.parquet."""

from __future__ import annotations

import click

from stages.common import params_option, user_errors


@click.command()
@click.option("--out", "out_path", default="data/manifest.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="manifest.parquet to write (biwi_npz images go to <its dir>/extracted/).")
@click.option("--summary", "summary_path", default=None, type=click.Path(dir_okay=False),
              help="also write the counts as JSON (DVC metric), e.g. metrics/index.json.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@params_option
@user_errors
def cli(out_path: str, summary_path: str | None, no_progress: bool, params_path: str) -> None:
    """Index datasets into one manifest; prints counts per dataset/split/status and rejection reasons."""
    from pipeline.core.io import config_from_mapping, load_params
    from pipeline.manifest.index import IndexConfig, format_summary, index_datasets

    section = load_params(params_path).get("index")
    if section is None:
        raise ValueError(f"{params_path} has no 'index' section (index: {{datasets: [{{name, format, root, split}}]}})")
    config = config_from_mapping(IndexConfig, section, f"{params_path}: index")
    summary = index_datasets(config, out_path, summary_path, progress=not no_progress)
    click.echo(format_summary(summary))
    click.echo(f"wrote {out_path}")
