"""``hpekd train-teacher``: stage 1, the multi-head ResNet teacher (DVC stage ``train_teacher``)."""

from __future__ import annotations

import click

from stages.common import check_outputs, load_config, params_option, user_errors


@click.command(help="Train the stage-1 teacher (ResNet + regression head + RvC heads) on the train rows of "
                    "--boxes; evaluates on its test rows after each epoch. Params section: train_teacher.")
@click.option("--boxes", default="data/boxes.parquet", show_default=True, type=click.Path(dir_okay=False))
@click.option("--out", default="models/teacher.pt", show_default=True, type=click.Path(dir_okay=False),
              help="Checkpoint, rewritten atomically after every epoch.")
@click.option("--metrics", "metrics_path", default="metrics/train_teacher.json", show_default=True,
              type=click.Path(dir_okay=False), help="JSON with final and best test MAE.")
@click.option("--plots", "plots_path", default="plots/train_teacher.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV, one row per epoch (loss parts, lr, MAE).")
@click.option("--resume", is_flag=True, help="Continue after the last finished epoch of --out (exactly).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--timing", "timing_path", default=None, type=click.Path(dir_okay=False),
              help="Also write seconds and images/s per epoch to this CSV (kept out of the checkpoint and metrics, "
                   "which stay byte-reproducible; e.g. logs/train_teacher_timing.csv).")
@params_option
@user_errors
def cli(boxes: str, out: str, metrics_path: str, plots_path: str, resume: bool, no_progress: bool,
        timing_path: str | None, params_path: str) -> None:
    from pipeline.training.outputs import RunPaths
    from pipeline.training.stage1 import train_teacher
    check_outputs([boxes, params_path], checkpoint=out, metrics=metrics_path, plots=plots_path, timing=timing_path)

    cfg = load_config(params_path, "train_teacher")
    paths = RunPaths(out, metrics_path, plots_path, timing_path)
    result = train_teacher(cfg, boxes, paths, resume=resume, progress=not no_progress)
    final, best = result["final"], result["best"]
    if "mae_mean" in final:
        click.echo(f"{out}: epoch {final['epoch']}, test MAE mean {final['mae_mean']:.2f} "
                   f"(best {best['mae_mean']:.2f} at epoch {best['epoch']})")
    else:
        click.echo(f"{out}: epoch {final.get('epoch')}, loss {final.get('loss', float('nan')):.4f} (no test rows)")
