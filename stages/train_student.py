"""`hpekd train-student`: stage 2, one RvC head (bin 1) trained with eq. 7 on one soft-target
source: the cached teacher labels (``--labels``), the teacher network run at every step
(``--online-teacher``), teacher-free Gaussian soft labels (``--gaussian``) or none (``--kd-weight
0``, the control without distillation)."""

from __future__ import annotations

import json

import click

from stages.common import check_outputs, load_config, params_option, user_errors

DEFAULT_LABELS = "labels/teacher.zarr"


@click.command()
@click.option("--labels", "labels_path", default=None,
              help=f"Teacher-label store written by `hpekd teacher-labels` (local path or fsspec URL) [default: "
                   f"{DEFAULT_LABELS} unless another source is chosen].")
@click.option("--boxes", "boxes_path", default="data/boxes.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="boxes.parquet the store was made from.")
@click.option("--backbone", default=None, help="ResNet of the student (overrides train_student.backbone).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (e.g. models/student_resnet18.pt).")
@click.option("--metrics", "metrics_path", default=None, type=click.Path(dir_okay=False),
              help="Training metrics JSON (DVC metrics).")
@click.option("--plots", "plots_path", default=None, type=click.Path(dir_okay=False),
              help="Per-epoch CSV (DVC plots).")
@click.option("--teacher", "teacher_path", default=None, type=click.Path(dir_okay=False),
              help="Optional stage-1 checkpoint: refuse a store made by another teacher.")
@click.option("--resume", is_flag=True, help="Continue from --out if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--timing", "timing_path", default=None, type=click.Path(dir_okay=False),
              help="Also write seconds and images/s per epoch to this CSV (kept out of the checkpoint and metrics, "
                   "which stay byte-reproducible; e.g. logs/train_student_resnet18_timing.csv).")
@click.option("--kd-weight", type=float, default=None,
              help="Override train_student.kd_weight. 0 = the control student without distillation: no soft target and "
                   "no label store; it draws the store's views (teacher_labels: views, view_seed, flip_prob, max_angle) "
                   "from their keys, so it differs from the KD student by the target alone.")
@click.option("--gaussian", is_flag=True,
              help="Teacher-free soft labels: the KL target is a discretised Gaussian of train_student.soft_label_sigma "
                   "degrees around the label, with the store's views drawn from their keys (no store, no teacher).")
@click.option("--online-teacher", "online_path", default=None, type=click.Path(dir_okay=False),
              help="Run this stage-1 checkpoint's convolutional ensemble on every training view instead of reading "
                   "--labels: (p, s), flip_prob, max_angle, chunk and amp come from the params section "
                   "`teacher_labels`. A fresh view per sample per epoch, A teacher passes each (docs/usage.md \"How many "
                   "views, which encoding\").")
@params_option
@user_errors
# 14 parameters: one per click option of the command (its CLI), not a library signature
def cli(labels_path: str, boxes_path: str, backbone: str | None, out_path: str, metrics_path: str | None,
        plots_path: str | None, teacher_path: str | None, resume: bool, no_progress: bool, timing_path: str | None,
        kd_weight: float | None, gaussian: bool, online_path: str | None, params_path: str) -> None:
    """Train a student (params section `train_student`) with eq. 7 on one soft-target source: the label
    store (--labels, the default), the teacher run at every step (--online-teacher), Gaussian soft labels
    without a teacher (--gaussian), or none (--kd-weight 0, the control without distillation)."""
    from pipeline.training.outputs import RunPaths
    from pipeline.training.stage2 import train_student
    check_outputs([labels_path, boxes_path, teacher_path, online_path, params_path], checkpoint=out_path,
                  metrics=metrics_path, plots=plots_path, timing=timing_path)

    cfg = load_config(params_path, "train_student", backbone=backbone or None, kd_weight=kd_weight)
    paths = RunPaths(out_path, metrics_path, plots_path, timing_path)
    targets = _targets(cfg, params_path, labels_path, online_path, teacher_path, gaussian)
    res = train_student(cfg, targets, boxes_path, paths, resume=resume, progress=not no_progress)
    click.echo(json.dumps({"out": out_path, "backbone": cfg.backbone, **res}, default=float))


# 6 parameters: the loaded section and the five options that pick the source
def _targets(cfg, params_path: str, labels_path: str | None, online_path: str | None, teacher_path: str | None,
             gaussian: bool):
    """The student's one soft-target source; two sources at once are refused in one line."""
    chosen = [name for name, on in (("--labels", labels_path is not None), ("--online-teacher", online_path is not None),
                                    ("--gaussian", gaussian), ("--kd-weight 0", cfg.kd_weight == 0)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} are two soft-target sources; a student takes one "
                               "(drop all but one)")
    if teacher_path is not None and (gaussian or cfg.kd_weight == 0 or online_path is not None):
        raise click.UsageError("--teacher checks a label store's teacher; it goes with --labels only")
    if online_path is not None:
        from pipeline.training.online import OnlineTargets, OnlineTeacher

        return OnlineTargets(OnlineTeacher.from_config(online_path, load_config(params_path, "teacher_labels")))
    if gaussian or cfg.kd_weight == 0:
        from pipeline.teacher.provenance import Views
        from pipeline.training.config import input_hw
        from pipeline.training.targets import GaussianTargets, NoTargets

        tl = load_config(params_path, "teacher_labels")
        views = Views(tl.view_seed, tl.views, tl.flip_prob, tl.max_angle, "identity", ["flip", "angle_deg"])
        size = input_hw(load_config(params_path, "train_teacher").input_size)  # the teacher's, as the store has it
        if gaussian:
            return GaussianTargets(cfg.soft_label_sigma, views, size)
        return NoTargets(views, size)
    from pipeline.training.targets import StoreTargets

    return StoreTargets(labels_path or DEFAULT_LABELS, cfg.max_label_memory_gb, teacher_path)
