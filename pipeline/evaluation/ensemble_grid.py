"""The (p, s) grid of convolutional ensembles on a test set (paper Tables 2–4, Fig. 6).

ONE pass with ``p = p_max, s = 1`` evaluates every crop offset of the largest region Z once;
every (p, s) ensemble with ``p ≤ p_max`` is then a subset mean of those crops
(:func:`pipeline.teacher.ensemble.subset_mean`: offsets ``(p_max − p + s·i, p_max − p + s·j)``), so
the whole table costs one ``(2·p_max + 1)²`` ensemble per image.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.core.angles import ANGLES
from pipeline.core.io import atomic_path, write_json
from pipeline.evaluation.errors import errors_frame, write_errors
from pipeline.evaluation.figures import ensemble_heatmap
from pipeline.evaluation.schema import (
    GRID_BEST,
    GRID_P_MAX,
    GRID_ROWS,
    GRID_SINGLE,
    GRID_STRIDES,
    MAE,
    MAE_MEAN,
    ROW_DATASET,
    ROW_P,
    ROW_S,
    ROW_SIZE,
    N,
)
from pipeline.manifest.rows import RowQuery, image_paths, row_angles, row_boxes, row_ids, select
from pipeline.manifest.schema import read_boxes
from pipeline.teacher.compute import ZDataset, cached_model, loader_workers
from pipeline.teacher.ensemble import crop_probs, ensemble_size, subset_mean, validate_ensemble

log = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class EnsembleGridConfig:
    """params.yaml section ``ensemble_grid``. Output-defining: p_max, s, split, theta_range."""

    p_max: int
    s: tuple[int, ...]
    split: str
    theta_range: float  # keep samples with all angles in [-θ, θ] (docs/design.md §8)
    batch_size: int  # images per pass (each brings (2·p_max+1)² crops)
    chunk: int  # crops per forward pass
    loader_workers: int
    device: str
    amp: bool

    def __post_init__(self) -> None:
        if not self.s:
            raise ValueError("ensemble_grid.s is empty: give at least one stride")
        for s in self.s:
            validate_ensemble(0, s)
        if self.p_max < 0:
            raise ValueError(f"ensemble_grid.p_max={self.p_max} must be >= 0")

    def grid(self) -> list[tuple[int, int]]:
        """All (p, s) with p a multiple of s, 0 ≤ p ≤ p_max."""
        return [(p, s) for s in sorted(set(self.s)) for p in range(0, self.p_max + 1, s)]


def run_ensemble_grid(cfg: EnsembleGridConfig, checkpoint: str, boxes: str,
                      errors_path: str | None = None) -> list[dict[str, Any]]:
    """MAE rows (dataset, p, s, A, mae_pitch, mae_yaw, mae_roll, mae) for every (p, s); with
    ``errors_path``, also every face's errors under every (p, s) (:mod:`pipeline.evaluation.errors`)."""
    from pipeline.core.io import sha256_file
    from pipeline.model.checkpoint import input_size_of, load_checkpoint
    from pipeline.model.network import ModelSpec

    state = load_checkpoint(checkpoint)
    spec = ModelSpec.from_dict(state["model_spec"])
    size = input_size_of(state, repr(checkpoint))
    head = spec.predict_key
    grid = spec.grids[head]
    del state
    df = read_boxes(boxes)
    rows = select(df, RowQuery(cfg.split, theta=cfg.theta_range)).rows
    if rows.size == 0:
        raise ValueError(f"{boxes!r} has no usable {cfg.split!r} rows with known angles in range")
    gt = row_angles(df)
    paths = image_paths(df, rows)
    box_arr = row_boxes(df, rows)
    datasets = df["dataset"].astype(str).to_numpy()[rows]
    model, dev = cached_model(checkpoint, sha256_file(checkpoint), cfg.device, False)
    ds = ZDataset(paths, box_arr, np.zeros((len(rows), 1, 2), np.float32), size, cfg.p_max)
    nw = loader_workers(cfg.loader_workers)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, num_workers=nw,
                                         pin_memory=dev.type == "cuda", prefetch_factor=4 if nw else None)
    combos = cfg.grid()
    err = {c: np.zeros((len(rows), 3)) for c in combos}
    off = 0
    from tqdm import tqdm

    for zb in tqdm(loader, desc="ensemble grid", unit="batch", disable=None):
        B = zb.shape[0]
        probs = crop_probs(model, zb[:, 0], size, cfg.p_max, 1, head=head, chunk=cfg.chunk, device=dev, amp=cfg.amp)
        truth = torch.as_tensor(gt[rows[off : off + B]], device=dev, dtype=torch.float32)
        for c in combos:
            pred = grid.decode_probs(subset_mean(probs, cfg.p_max, *c))
            err[c][off : off + B] = (pred - truth).abs().cpu().numpy()
        off += B
    if errors_path:
        ids = np.array(row_ids(df, rows), dtype=object)
        write_errors(pd.concat([errors_frame(ids, datasets, err[c], *c) for c in combos], ignore_index=True),
                     errors_path)
    out = []
    for name in sorted(set(datasets)):
        m = datasets == name
        for p, s in combos:
            mae = err[(p, s)][m].mean(0)
            out.append({ROW_DATASET: name, ROW_P: p, ROW_S: s, ROW_SIZE: ensemble_size(p, s), N: int(m.sum()),
                        **{MAE[a]: round(float(v), 4) for a, v in zip(ANGLES, mae)},
                        MAE_MEAN: round(float(mae.mean()), 4)})
    return out


def write_grid(rows: list[dict[str, Any]], cfg: EnsembleGridConfig, json_path: str, csv_path: str, png_path: str) -> None:
    """JSON (metrics: table + best per dataset), CSV (plots) and the Fig. 6 heat map."""
    best = {}
    for r in rows:
        if r[ROW_DATASET] not in best or r[MAE_MEAN] < best[r[ROW_DATASET]][MAE_MEAN]:
            best[r[ROW_DATASET]] = r
    single = {r[ROW_DATASET]: r[MAE_MEAN] for r in rows if r[ROW_P] == 0}
    write_json(json_path, {GRID_P_MAX: cfg.p_max, GRID_STRIDES: list(cfg.s), GRID_BEST: best, GRID_SINGLE: single,
                           GRID_ROWS: rows})
    with atomic_path(csv_path, ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ensemble_heatmap(rows, cfg.p_max, cfg.s, png_path)


