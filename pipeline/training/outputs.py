"""A training run's output paths (:class:`RunPaths`) and its files besides the checkpoint: the
DVC metrics JSON, the per-epoch plots CSV and the timing CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.io import atomic_path, write_json

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class RunPaths:
    """Where a training run writes: the checkpoint ``out`` (rewritten atomically after every
    epoch), the DVC ``metrics`` JSON and ``plots`` CSV, and the ``timing`` CSV (wall-clock
    figures: no DVC output). ``None`` = not written."""

    out: PathArg
    metrics: PathArg | None = None
    plots: PathArg | None = None
    timing: PathArg | None = None


# ----------------------------------------------------------------------------- metrics files


def _accuracy(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k == "epoch" or k.startswith("mae_")}


def write_metrics(metrics_path: PathArg | None, plots_path: PathArg | None,
                  history: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None,
                  extra: Mapping[str, Any] | None = None) -> None:
    """DVC metrics JSON ``{"epochs", "final": {epoch, mae_*}, "best": {...}, **extra}`` (accuracy
    and data counts only, so ``dvc metrics diff`` shows what changed in quality) and a plots CSV
    with one row per epoch (loss parts, lr, test MAE). Both are pure functions of the training:
    no timings."""
    if metrics_path:
        final = _accuracy(history[-1]) if history else {}
        write_json(metrics_path, {"epochs": len(history), "final": final, "best": dict(best or {}), **dict(extra or {})})
    if plots_path:
        write_epoch_csv(plots_path, history)


def write_epoch_csv(path: PathArg, rows: Sequence[Mapping[str, Any]]) -> None:
    """One CSV row per epoch (atomically): the columns are the rows' keys in first-seen order,
    floats written with 6 significant digits."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path, ".csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for row in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


__all__ = ["PathArg", "RunPaths", "write_epoch_csv", "write_metrics"]
