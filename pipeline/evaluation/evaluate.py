"""Evaluation of a trained checkpoint (teacher or student) on test rows (docs/design.md §8).

MAE per angle and their mean (eq. 1) per test set (each ``dataset`` value among the
selected rows = one test set of a protocol), on samples with all angles in ±99° (rows
outside are counted as ``dropped``), plus a Fig. 7-style grid of faces with predicted and
true pose axes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.core.angles import ANGLES
from pipeline.core.device import resolve_device
from pipeline.core.io import write_json
from pipeline.data.datasets import PoseDataset
from pipeline.data.loader import make_loader
from pipeline.evaluation.errors import errors_frame, write_errors
from pipeline.evaluation.figures import pose_grid, scatter_figure, write_pose_grid
from pipeline.evaluation.schema import (
    ALL,
    BACKBONE,
    BASELINE,
    BASELINE_MEAN,
    DATASETS,
    DROPPED,
    KIND,
    MAE,
    MAE_MEAN,
    PEARSON,
    SLOPE,
    SPLIT,
    N,
)
from pipeline.manifest.rows import RowQuery, row_angles, select
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import input_size_of, model_from_checkpoint
from pipeline.training.engine import Runtime, prepare_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """params.yaml section ``evaluate`` (optional; unknown keys are an error)."""

    batch_size: int
    workers: int
    device: str
    grid_faces: int  # faces drawn in the PNG grid
    grid_size: int  # pixel size of one face tile

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0 or self.grid_faces < 1 or self.grid_size < 32:
            raise ValueError(
                f"evaluate: batch_size ({self.batch_size}) and grid_faces ({self.grid_faces}) must be >= 1, "
                f"workers ({self.workers}) >= 0, grid_size ({self.grid_size}) >= 32"
            )


def mae_table(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Eq. 1 for [N, 3] degree arrays: ``mae_pitch``, ``mae_yaw``, ``mae_roll``, ``mae_mean``."""
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)).mean(0)
    out = {MAE[a]: float(e) for a, e in zip(ANGLES, err)}
    out[MAE_MEAN] = float(err.mean())
    return out


def _round(v: float) -> float | None:
    return round(float(v), 6) if np.isfinite(v) else None


def angle_stats(pred: np.ndarray, true: np.ndarray, train_mean: np.ndarray | None) -> dict[str, float | None]:
    """Per angle: ``slope_*`` (least squares of predicted on true: 1 = the right scale, 0 = a
    constant prediction), Pearson ``r_*``, and ``baseline_mae_*`` (+ ``baseline_mae_mean``), the
    MAE of predicting ``train_mean`` for every face — the bar a model has to clear."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    out: dict[str, float | None] = {}
    for k, a in enumerate(ANGLES):
        t, q = true[:, k], pred[:, k]
        var = float(((t - t.mean()) ** 2).sum()) if len(t) > 1 else 0.0
        cov = float(((t - t.mean()) * (q - q.mean())).sum()) if len(t) > 1 else 0.0
        qv = float(((q - q.mean()) ** 2).sum()) if len(q) > 1 else 0.0
        out[SLOPE[a]] = _round(cov / var) if var > 0 else None
        out[PEARSON[a]] = _round(cov / np.sqrt(var * qv)) if var > 0 and qv > 0 else None
    if train_mean is not None:
        base = np.abs(true - np.asarray(train_mean, np.float64)).mean(0)
        out.update({BASELINE[a]: _round(b) for a, b in zip(ANGLES, base)})
        out[BASELINE_MEAN] = _round(base.mean())
    return out


def train_mean_pose(df: Any) -> np.ndarray | None:
    """Mean (pitch, yaw, roll) of the labelled training rows within ±99°, or None when there are none."""
    a = row_angles(df, select(df, "train").rows)
    return a.mean(0) if len(a) else None


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, dataset: PoseDataset, cfg: EvalConfig, device: torch.device) -> np.ndarray:
    """[N, 3] predictions (degrees) in dataset order, identity view."""
    rt = Runtime(device)
    model.to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    loader, _ = make_loader(dataset, cfg.batch_size, train=False, workers=cfg.workers, pin_memory=device.type == "cuda")
    preds = []
    for raw in loader:
        batch = prepare_batch(raw, rt)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=rt.amp):
            preds.append(model.predict(batch["image"]).float().cpu().numpy())
    return np.concatenate(preds)


@dataclass(frozen=True)
class EvalOutputs:
    """Files an evaluation writes (each optional): the metrics JSON, the pose grid and the scatter
    PNGs, and the per-face errors (:mod:`pipeline.evaluation.errors`)."""

    metrics: str | os.PathLike[str] | None = None
    grid: str | os.PathLike[str] | None = None
    scatter: str | os.PathLike[str] | None = None
    errors: str | os.PathLike[str] | None = None


def evaluate_checkpoint(
    model_path: str | os.PathLike[str],
    boxes: str | os.PathLike[str],
    split: str,
    datasets: Sequence[str] | None,
    cfg: EvalConfig,
    outputs: EvalOutputs = EvalOutputs(),
) -> dict[str, Any]:
    """Evaluate ``model_path`` on the ``split`` rows of ``boxes``; per-dataset and overall MAE.

    Returns (and writes as JSON to ``outputs.metrics``) ``{"kind", "backbone", "split",
    "datasets": {name: {mae_*, slope_*, r_*, baseline_mae_*, n, dropped}}, "all": {...}}``:
    accuracy figures only, a pure function of the model and the data (no path, hash or time).
    """
    model, state = model_from_checkpoint(model_path)
    size = input_size_of(state, repr(str(model_path)))
    df = read_boxes(boxes)
    ds = PoseDataset(df, RowQuery(split, tuple(datasets or ())), size, train=False, source=repr(str(boxes)))
    device = resolve_device(cfg.device)
    pred = predict_dataset(model, ds, cfg, device)
    mean = train_mean_pose(df)
    result: dict[str, Any] = {KIND: state["kind"], BACKBONE: model.spec.backbone, SPLIT: split, DATASETS: {}}
    for name in sorted(set(ds.dataset_names)):
        m = ds.dataset_names == name
        result[DATASETS][name] = {**mae_table(pred[m], ds.angles[m]), **angle_stats(pred[m], ds.angles[m], mean),
                                  N: int(m.sum()), DROPPED: select(df, RowQuery(split, (name,))).dropped}
    result[ALL] = {**mae_table(pred, ds.angles), **angle_stats(pred, ds.angles, mean), N: len(ds),
                   DROPPED: ds.dropped}
    for name, r in {**result[DATASETS], ALL: result[ALL]}.items():
        log.info("%s: MAE pitch %.2f yaw %.2f roll %.2f mean %.2f (n=%d)", name, *(r[MAE[a]] for a in ANGLES),
                 r[MAE_MEAN], r[N])
    if outputs.metrics:
        write_json(outputs.metrics, result)
    if outputs.errors:
        write_errors(errors_frame(ds.sample_ids, ds.dataset_names, np.abs(pred - ds.angles)), outputs.errors)
    if outputs.grid:
        write_pose_grid(outputs.grid, make_grid(ds, pred, cfg))
    if outputs.scatter:
        title = f"{state['kind']} {model.spec.backbone}: predicted vs true on the {split} rows (n={len(ds)})"
        scatter_figure(pred, ds.angles, outputs.scatter, title, result[ALL])
    return result


def make_grid(ds: PoseDataset, pred: np.ndarray, cfg: EvalConfig) -> np.ndarray:
    """Fig. 7-style grid of ``cfg.grid_faces`` faces spread evenly over the dataset."""
    n = min(cfg.grid_faces, len(ds))
    picks = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    view = ds.with_size((cfg.grid_size, cfg.grid_size))  # same rows, drawn at a readable size
    crops = [view[int(i)]["image"].numpy().transpose(1, 2, 0) for i in picks]
    captions = [f"err {np.abs(pred[i] - ds.angles[i]).mean():.1f}" for i in picks]
    return pose_grid(crops, pred[picks], ds.angles[picks], captions)


__all__ = ["EvalConfig", "EvalOutputs", "evaluate_checkpoint", "mae_table", "make_grid", "predict_dataset"]
