"""`hpekd teacher-labels`: the convolutional-ensemble soft labels of a stage-1 teacher, into a
sharded Zarr store (docs/design.md §6). Resumable: a rerun skips finished shards."""

from __future__ import annotations

import json

import click

from pipeline.teacher.job import run_teacher_labels
from stages.common import load_config, params_option, user_errors


@click.command()
@click.option("--model", "model", required=True, type=click.Path(dir_okay=False), help="Stage-1 checkpoint.")
@click.option("--boxes", required=True, type=click.Path(dir_okay=False), help="boxes.parquet (the manifest with boxes).")
@click.option("--out", required=True, help="Label store: a local path or any fsspec URL (file://, s3://, ...).")
@click.option("--workers", type=int, default=None,
              help="Start a local dask cluster with N worker processes (one per GPU); 0 = run in this process. "
                   "Default: teacher_labels.workers.")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (e.g. tcp://host:8786).")
@click.option("--break-lease", is_flag=True,
              help="Take over the store's lease from a job that is gone (killed on another machine). A lease whose "
                   "process is dead on this machine is taken over without it.")
@params_option
@user_errors
def cli(model: str, boxes: str, out: str, workers: int | None, scheduler: str | None, break_lease: bool,
        params_path: str) -> None:
    """Label every training sample (V views) with the teacher's ensemble distributions."""
    from pipeline.core.io import check_folder_output
    from pipeline.teacher.labelstore import local_path
    from pipeline.teacher.target import LABEL_STORE

    if local_path(out) is not None:
        check_folder_output(local_path(out), LABEL_STORE, "--out", [model, boxes, params_path])  # type: ignore[arg-type]
    cfg = load_config(params_path, "teacher_labels", workers=workers)
    res = run_teacher_labels(cfg, model, boxes, out, scheduler=scheduler, break_lease=break_lease)
    summary = res.to_dict()
    summary["crops_per_s"] = round(res.crops / res.seconds, 1) if res.seconds > 0 else 0.0
    click.echo(json.dumps(summary))
