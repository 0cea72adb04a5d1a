"""`hpekd index`: read the configured datasets (params section `index`) into manifest.parquet."""

from __future__ import annotations

import click

from stages.common import check_outputs, load_config, params_option, user_errors


@click.command()
@click.option("--out", "out_path", default="data/manifest.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="manifest.parquet to write (biwi_npz images go to <its dir>/extracted/).")
@click.option("--summary", "summary_path", default=None, type=click.Path(dir_okay=False),
              help="also write the counts as JSON (DVC metric), e.g. metrics/index.json.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="refuse a dataset root, split file or table outside this folder (dvc.yaml passes params' "
                   "data_root, the folder the stage depends on).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@params_option
@user_errors
def cli(out_path: str, summary_path: str | None, data_root: str | None, no_progress: bool, params_path: str) -> None:
    """Index datasets into one manifest; prints counts per dataset/split/status and rejection reasons.

    Each entry of `index.datasets` is {name, format, root, split, ...}. Formats: 300w_lp,
    aflw2000, biwi, biwi_npz, aflw (the public datasets as distributed), table (your own faces:
    a CSV/parquet file `table:` with columns image, pitch, yaw, roll and optionally x1..y2,
    split, face, group; empty angle cells = unlabelled) and images (a folder of unlabelled
    images). See README "Training on your own data".
    """
    from pipeline.manifest.index import format_summary, index_datasets

    config = load_config(params_path, "index")
    check_outputs([params_path, *(p for _, p in config.input_paths())], manifest=out_path, summary=summary_path)
    if data_root:
        from pipeline.core.io import check_inside

        check_inside(config.input_paths(), data_root)
    summary = index_datasets(config, out_path, summary_path, progress=not no_progress)
    click.echo(format_summary(summary))
    click.echo(f"wrote {out_path}")
