"""Helpers for the student tests: an "oracle" teacher-label store built without a teacher.

The oracle's soft label of view v is a narrow Gaussian over the bin-1 grid around the
ground-truth pose corrected for that view (what a perfect teacher would say), so a student
learns from it quickly and any misalignment between views and soft targets would show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.bins import BinGrid
from pipeline.core.io import sha256_file
from pipeline.core.views import view_from_row, views_array
from pipeline.manifest.rows import labelled_mask, row_angles, row_ids, split_rows
from pipeline.manifest.schema import read_boxes
from pipeline.teacher import labelstore
from pipeline.teacher.encoding import Encoding
from pipeline.teacher.ensemble import ensemble_size
from pipeline.teacher.provenance import Bins, Ensemble, Manifest, TeacherInfo, Views, store_provenance


def oracle_probs(poses: np.ndarray, grid: BinGrid, sigma: float = 3.0) -> np.ndarray:
    """[..., 3] degrees → [..., 3, Q] Gaussian distributions over the grid's centers."""
    d = grid.centers[None, :] - poses.reshape(-1, 1)
    p = np.exp(-0.5 * (d / sigma) ** 2)
    p /= p.sum(-1, keepdims=True)
    return p.reshape(*poses.shape, grid.count).astype(np.float32)


def make_oracle_store(
    boxes: Path, out: Path, size: int = 64, n_views: int = 3, view_seed: int = 0, sigma: float = 3.0,
    bin_size: float = 1, teacher_sha: str = "0" * 64, sample_ids: list[str] | None = None,
    max_angle: float = 15.0, shard_rows: int = 16, encoding: str = "float16",
) -> Path:
    df = read_boxes(boxes)
    rows = split_rows(df, "train")
    ids = sample_ids or row_ids(df, rows)
    grid = BinGrid(bin_size)
    views = views_array(ids, n_views, view_seed, 0.5, max_angle)
    poses = np.zeros((len(rows), n_views, 3))
    gt = row_angles(df, rows)
    for i in range(len(rows)):
        for v in range(n_views):
            poses[i, v] = view_from_row(views[i, v]).pose(*gt[i])
    labelled = labelled_mask(df)[rows]
    layout = labelstore.Layout(len(rows), n_views, grid.count, shard_rows, 8)
    attrs = store_provenance(
        teacher=TeacherInfo(teacher_sha, "stage1", {"backbone": "oracle"}, "oracle", "bin1"),
        bins=Bins(grid.size, grid.theta, grid.count), ensemble=Ensemble(2, 2, ensemble_size(2, 2)),
        input_size=(size, size),
        manifest=Manifest(sha256_file(boxes), boxes.name, "train", "ok", int(labelled.sum()), int((~labelled).sum())),
        views=Views(view_seed, n_views, 0.5, max_angle, "identity", ["flip", "angle_deg"]),
        layout=layout.to_dict(), encoding=Encoding(encoding, grid.count).to_dict(), package="test",
    ).to_attrs()
    g = labelstore.create_layout(str(out), attrs, ids, rows, views)
    probs = oracle_probs(poses, grid, sigma)
    for k in range(layout.n_shards):
        a, b = layout.shard_range(k)
        labelstore.write_shard(g, k, probs[a:b])
    return out
