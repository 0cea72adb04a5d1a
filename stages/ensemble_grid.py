"""`hpekd ensemble-grid`: MAE of every (p, s) convolutional ensemble of the teacher on a test
set from one pass at p_max (paper Tables 2–4 and Fig. 6)."""

from __future__ import annotations

import click

from pipeline.evaluation.ensemble_grid import run_ensemble_grid, write_grid
from stages.common import check_outputs, load_config, params_option, user_errors


@click.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Stage-1 checkpoint.")
@click.option("--boxes", required=True, type=click.Path(dir_okay=False), help="boxes.parquet with the test split.")
@click.option("--out-json", required=True, type=click.Path(dir_okay=False), help="Metrics JSON (table + best).")
@click.option("--out-csv", required=True, type=click.Path(dir_okay=False), help="Table as CSV (DVC plots).")
@click.option("--out-png", required=True, type=click.Path(dir_okay=False), help="Heat map (Fig. 6).")
@click.option("--out-errors", default=None, type=click.Path(dir_okay=False),
              help="Per-face errors of every (p, s) as parquet (the report's paired intervals use them).")
@params_option
@user_errors
def cli(model: str, boxes: str, out_json: str, out_csv: str, out_png: str, out_errors: str | None,
        params_path: str) -> None:
    """Evaluate every (p, s) ensemble with p <= p_max on the test split."""
    check_outputs([model, boxes, params_path], json=out_json, csv=out_csv, png=out_png, errors=out_errors)
    cfg = load_config(params_path, "ensemble_grid")
    rows = run_ensemble_grid(cfg, model, boxes, out_errors)
    write_grid(rows, cfg, out_json, out_csv, out_png)
    for r in rows:
        if r["p"] == 0 and r["s"] == min(cfg.s):
            click.echo(f"{r['dataset']}: single network MAE {r['mae_mean']:.3f}")
    best = {}
    for r in rows:
        if r["dataset"] not in best or r["mae_mean"] < best[r["dataset"]]["mae_mean"]:
            best[r["dataset"]] = r
    for name, r in best.items():
        click.echo(f"{name}: best ensemble p={r['p']} s={r['s']} A={r['A']} MAE {r['mae_mean']:.3f}")
