"""What a training run writes besides its checkpoint: the DVC metrics JSON and the per-epoch plots CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.core.io import atomic_path, write_json


def _accuracy(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k == "epoch" or k.startswith("mae_")}


def write_metrics(metrics_path: str | os.PathLike[str] | None, plots_path: str | os.PathLike[str] | None,
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
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        with atomic_path(plots_path, ".csv") as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                for row in history:
                    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
