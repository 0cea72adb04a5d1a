"""`hpekd relabel`: one face box per manifest row (detector, landmarks or published boxes)."""

from __future__ import annotations

import click

from stages.common import check_outputs, load_config, params_option, user_errors


@click.command()
@click.option("--manifest", "manifest_path", default="data/manifest.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="manifest.parquet written by `hpekd index`.")
@click.option("--out", "out_path", default="data/boxes.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="boxes.parquet to write.")
@click.option("--summary", "summary_path", default="metrics/relabel.json", show_default=True,
              type=click.Path(dir_okay=False), help="summary JSON (DVC metric).")
@click.option("--cache", "cache_dir", default="data/relabel_cache", show_default=True,
              type=click.Path(file_okay=False), help="per-image results, so an interrupted run resumes.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the cache.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="refuse a box file outside this folder (dvc.yaml passes params' data_root, the folder the "
                   "stage depends on).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@params_option
@user_errors
def cli(manifest_path: str, out_path: str, summary_path: str, cache_dir: str, no_cache: bool,  # one per click option
        data_root: str | None, no_progress: bool, params_path: str) -> None:
    """Relabel face boxes (params section `relabel`) and write boxes.parquet + a summary."""
    from pipeline.core.io import check_folder_output, write_json
    from pipeline.relabel.cache import RELABEL_CACHE

    check_outputs([manifest_path, params_path], boxes=out_path, summary=summary_path)
    if not no_cache:
        check_folder_output(cache_dir, RELABEL_CACHE, "--cache", [manifest_path, params_path])
    from pipeline.relabel.job import read_manifest_table, relabel, write_boxes
    from pipeline.relabel.summary import format_summary

    config = load_config(params_path, "relabel")
    if data_root:
        from pipeline.core.io import check_inside

        check_inside([(f"relabel.box_files.{ds}", path) for ds, path in config.file_box_files().items()], data_root)
    manifest = read_manifest_table(manifest_path)
    boxes, summary = relabel(manifest, config, cache_dir=None if no_cache else cache_dir, progress=not no_progress)
    write_boxes(boxes, out_path)
    # the DVC metric holds what the boxes are, not how they were computed: the cache counters
    # (images read from the cache vs detected) differ between a fresh run and a rerun
    write_json(summary_path, {k: v for k, v in summary.items() if k != "images"})
    click.echo(format_summary(summary))
    counts = summary.get("images") or {}
    if counts:
        click.echo(f"images: {counts.get('images')} ({counts.get('from_cache')} from the cache, "
                   f"{counts.get('computed')} read/detected now)")
