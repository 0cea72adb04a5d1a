"""`hpekd report`: the paper's Table 5 for whatever was evaluated — one row per role of
:mod:`pipeline.evaluation.roles` (training mean, base, ensemble, KD, KD-online, without KD,
soft-label) — with paired intervals and plain findings."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.evaluation.roles import help_text
from stages.common import check_outputs, user_errors


@click.command()
@click.option("--metrics-dir", default="metrics/eval", show_default=True, type=click.Path(file_okay=False),
              help="Directory searched (recursively) for the evaluation files of `hpekd evaluate`, named "
                   f"<role>-<backbone>.json: {help_text()}.")
@click.option("--from-dvc", is_flag=True,
              help="Read only the evaluation files that the current dvc.yaml declares as metrics (under "
                   "--metrics-dir) for the current params: a file left by another configuration or an earlier "
                   "student list is never read. dvc.yaml's report stage uses this.")
@click.option("--ensemble-grid", "grid_path", default=None, type=click.Path(dir_okay=False),
              help="Output JSON of `hpekd ensemble-grid`: its rows at (--p, --s) become the "
                   "Ensemble-<--backbone> row. Needs --p, --s and --backbone.")
@click.option("--p", "p", default=None, type=click.IntRange(min=0),
              help="With --ensemble-grid: the ensemble's p that made the teacher labels (params teacher_labels.p).")
@click.option("--s", "s", default=None, type=click.IntRange(min=1),
              help="With --ensemble-grid: the ensemble's stride s that made the teacher labels "
                   "(params teacher_labels.s).")
@click.option("--backbone", default=None,
              help="With --ensemble-grid: the stage-1 network's backbone, e.g. resnet50 (params "
                   "train_teacher.backbone); names the Ensemble row.")
@click.option("--errors-dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the per-face errors (`hpekd evaluate --errors`, <role>-<backbone>.parquet, and the "
                   "grid's ensemble_grid.parquet): adds the paired 95 % interval of every comparison (ensemble − "
                   "base, KD − base, KD − without KD, KD − KD-online, KD − soft-label, without KD − base, "
                   "soft-label − without KD), and the findings say 'beats' only when it excludes 0.")
@click.option("--summary", "summary_path", default=None, type=click.Path(dir_okay=False),
              help="With --errors-dir: the differences and intervals as JSON (a DVC metric).")
@click.option("--seed-spread", "spread_path", default=None, type=click.Path(dir_okay=False),
              help='JSON {"source": str, "student_sd": float, "delta_sd": float}: the seed-to-seed SD of a '
                   "student's MAE and of a paired difference, measured by benchmarks/kd_effect.py. Printed beside "
                   "every verdict; a difference below about 2 × delta_sd is marked as one another seed could "
                   "overturn (the intervals cover the test faces, not the training seed).")
@click.option("--out", "out_path", default="reports/table5.md", show_default=True,
              type=click.Path(dir_okay=False), help="Markdown table to write.")
@click.option("--plot", "plot_path", default="reports/table5.png", show_default=True,
              type=click.Path(dir_okay=False), help="PNG bar chart to write.")
@user_errors
def cli(metrics_dir: str, from_dvc: bool, grid_path: str | None, p: int | None, s: int | None,  # one per option
        backbone: str | None, errors_dir: str | None, summary_path: str | None, spread_path: str | None,
        out_path: str, plot_path: str) -> None:
    """Write the Table-5 style MAE table (Markdown) and a bar chart (PNG)."""
    given = {"--p": p, "--s": s, "--backbone": backbone}
    if grid_path and None in given.values():
        missing = [name for name, value in given.items() if value is None]
        raise click.UsageError(f"--ensemble-grid needs {' and '.join(missing)}: the p and s of the teacher labels' "
                               "ensemble and the teacher's backbone (dvc.yaml passes teacher_labels.p, "
                               "teacher_labels.s and train_teacher.backbone)")
    if not grid_path and any(value is not None for value in given.values()):
        raise click.UsageError("--p, --s and --backbone only apply with --ensemble-grid")
    from pipeline.evaluation.report import markdown_table, write_report
    from pipeline.evaluation.results import ensemble_row_from_grid, load_seed_spread

    if summary_path and not errors_dir:
        raise click.UsageError("--summary holds the intervals: it needs --errors-dir")
    spread = load_seed_spread(spread_path) if spread_path else None
    read = [grid_path, spread_path,
            *(str(f) for d in (metrics_dir, errors_dir) if d for f in Path(d).rglob("*") if f.is_file())]
    check_outputs(read, report=out_path, plot=plot_path, summary=summary_path)
    extra = []
    if grid_path:
        extra.append(ensemble_row_from_grid(grid_path, p, s, backbone))
    only = declared_metrics(metrics_dir) if from_dvc else None
    rows = write_report(metrics_dir, out_path, plot_path, extra, only, errors_dir,
                        (p, s) if grid_path else None, summary_path, spread)  # type: ignore[arg-type]
    click.echo(markdown_table(rows), nl=False)
    click.echo(f"wrote {out_path} and {plot_path} ({len(rows)} models)")


def declared_metrics(under: str) -> list[str]:
    """The metrics files the DVC project in the working directory declares (dvc.yaml resolved
    with the current params) that lie under ``under``."""
    import os

    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from pipeline.core.io import is_inside

    try:
        with Repo(".") as repo:  # declared paths are the repo's; compare them with --metrics-dir absolutely
            paths = {os.path.relpath(os.path.join(repo.root_dir, out.def_path), os.getcwd())
                     for stage in repo.index.stages for out in stage.outs if out.metric}
    except DvcException as exc:
        raise ValueError(f"--from-dvc: cannot read the DVC project here ({exc}); run from the project root or "
                         "drop --from-dvc to read every file under --metrics-dir") from exc
    found = sorted(p for p in paths if is_inside(p, under) and p.endswith(".json"))
    if not found:
        raise ValueError(f"--from-dvc: dvc.yaml declares no evaluation metrics under {under!r}")
    return found
