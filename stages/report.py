"""`hpekd report`: the paper's Table 5 (Base / Ensemble / KD rows) for whatever was evaluated."""

from __future__ import annotations

import click

from stages.common import check_outputs, load_config, params_option, user_errors


@click.command()
@click.option("--metrics-dir", default="metrics/eval", show_default=True, type=click.Path(file_okay=False),
              help="Directory searched (recursively) for <role>-<backbone>.json evaluation files, "
                   "role in base|ensemble|kd.")
@click.option("--ensemble-grid", "grid_path", default=None, type=click.Path(dir_okay=False),
              help="Output JSON of `hpekd ensemble-grid`: its rows at the teacher labels' (p, s) "
                   "(params teacher_labels.p/.s) become the Ensemble-<train_teacher.backbone> row.")
@click.option("--out", "out_path", default="reports/table5.md", show_default=True,
              type=click.Path(dir_okay=False), help="Markdown table to write.")
@click.option("--plot", "plot_path", default="reports/table5.png", show_default=True,
              type=click.Path(dir_okay=False), help="PNG bar chart to write.")
@params_option
@user_errors
def cli(metrics_dir: str, grid_path: str | None, out_path: str, plot_path: str, params_path: str) -> None:
    """Write the Table-5 style MAE table (Markdown) and a bar chart (PNG)."""
    from pipeline.evaluation.report import ensemble_row_from_grid, markdown_table, write_report

    check_outputs(report=out_path, plot=plot_path)
    extra = []
    if grid_path:

        labels = load_config(params_path, "teacher_labels")
        teacher = load_config(params_path, "train_teacher")
        extra.append(ensemble_row_from_grid(grid_path, labels.p, labels.s, teacher.backbone))
    rows = write_report(metrics_dir, out_path, plot_path, extra)
    click.echo(markdown_table(rows), nl=False)
    click.echo(f"wrote {out_path} and {plot_path} ({len(rows)} models)")
