"""``hpekd evaluate``: MAE per angle and mean per test set, plus a Fig. 7-style pose grid."""

from __future__ import annotations

import click

from stages.common import check_outputs, load_config, params_option, user_errors


@click.command(help="Evaluate a teacher or student checkpoint on the --split rows of --boxes: MAE per angle "
                    "and mean (eq. 1), predicted-vs-true slope and Pearson r per angle, and the MAE of predicting "
                    "the training mean, per dataset (= test set of a protocol). Params section: evaluate.")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="Checkpoint (.pt).")
@click.option("--boxes", default="data/boxes.parquet", show_default=True, type=click.Path(dir_okay=False))
@click.option("--split", default="test", show_default=True)
@click.option("--dataset", "datasets", multiple=True, help="Only these dataset names (repeatable); default all.")
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False), help="Output JSON.")
@click.option("--grid", "grid_path", default=None, type=click.Path(dir_okay=False), help="Output PNG grid.")
@click.option("--scatter", "scatter_path", default=None, type=click.Path(dir_okay=False),
              help="Output PNG: predicted vs true, one panel per angle, with the identity line.")
@click.option("--errors", "errors_path", default=None, type=click.Path(dir_okay=False),
              help="Output parquet: the absolute error of every face (what the report's paired intervals use).")
@params_option
@user_errors
def cli(model_path: str, boxes: str, split: str, datasets: tuple[str, ...], metrics_path: str,  # one per option
        grid_path: str | None, scatter_path: str | None, errors_path: str | None, params_path: str) -> None:
    from pipeline.evaluation.evaluate import EvalOutputs, evaluate_checkpoint
    from pipeline.evaluation.schema import ALL, BASELINE_MEAN, DATASETS, DROPPED, MAE, MAE_MEAN, SLOPE, N

    check_outputs([model_path, boxes, params_path], metrics=metrics_path, grid=grid_path, scatter=scatter_path, errors=errors_path)
    cfg = load_config(params_path, "evaluate")
    result = evaluate_checkpoint(model_path, boxes, split, list(datasets) or None, cfg,
                                 EvalOutputs(metrics_path, grid_path, scatter_path, errors_path))
    for name, r in {**result[DATASETS], ALL: result[ALL]}.items():
        click.echo(f"{name:>20}: pitch {r[MAE['pitch']]:6.2f} yaw {r[MAE['yaw']]:6.2f} roll {r[MAE['roll']]:6.2f} "
                   f"mean {r[MAE_MEAN]:6.2f}  (n={r[N]}, dropped {r[DROPPED]})")
        slopes = " ".join(f"{a} {r[key]:.2f}" for a, key in SLOPE.items() if r.get(key) is not None)
        if slopes:
            base = r.get(BASELINE_MEAN)
            click.echo(f"{'':>20}  slope {slopes}" + (f"; predicting the training mean: MAE {base:.2f}" if base else ""))
