"""Which box belongs to a manifest row: the labelled face among detections, published box-file
lookup, and the visit order of video frames (the rule is described in :mod:`pipeline.relabel.job`).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.manifest.boxfile import load_box_file as _load_box_file
from pipeline.relabel.detect import box_iou


def _norm_relpath(p: str) -> str:
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def load_box_file(path: str | os.PathLike) -> dict[tuple[str, int], tuple[float, float, float, float]]:
    """Published box JSON as ``{(relpath, faceid): (x1, y1, x2, y2)}`` (validated by
    :func:`pipeline.manifest.boxfile.load_box_file`)."""
    return {(_norm_relpath(rel), int(fid)): tuple(map(float, fb.box)) for (rel, fid), fb in _load_box_file(path).items()}


def file_box(boxes: dict, image_path: str, face: int) -> tuple[float, float, float, float] | None:
    rel = _norm_relpath(image_path)
    for k in (rel, os.path.splitext(rel)[0]):
        if (k, face) in boxes:
            return boxes[(k, face)]
    return None


def _center(b: Sequence[float]) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0])


def select_face(dets: np.ndarray, w: int, h: int, landmark_box: Sequence[float] | None = None,
                previous_box: Sequence[float] | None = None, min_iou: float = 0.3) -> tuple[int | None, float, str]:
    """Pick the labelled face among detections ``dets`` [N, 5] (x1, y1, x2, y2, score).

    Returns ``(index or None, IoU with the landmark box or NaN, reason if None)``; the rule is
    the one in the module docstring.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if len(dets) == 0:
        return None, math.nan, "no face detected"
    if landmark_box is not None:
        ious = box_iou(dets[:, :4], landmark_box)[:, 0]
        i = int(np.argmax(ious))
        if ious[i] < min_iou:
            return None, float(ious[i]), (f"face does not match landmark box: best IoU {ious[i]:.2f} "
                                          f"< min_iou {min_iou:g} ({len(dets)} face(s) found)")
        return i, float(ious[i]), ""
    centres = (dets[:, 0:2] + dets[:, 2:4]) / 2.0
    if previous_box is not None:
        d = np.linalg.norm(centres - _center(previous_box), axis=1)
        return int(np.argmin(d)), math.nan, ""
    half_diag = max(math.hypot(w, h) / 2.0, 1e-6)
    d = np.linalg.norm(centres - np.array([w / 2.0, h / 2.0]), axis=1)
    rank = dets[:, 4] * (1.0 - np.clip(d / half_diag, 0.0, 1.0))
    return int(np.argmax(rank)), math.nan, ""


def row_landmark_box(row: Any) -> tuple[float, float, float, float] | None:
    b = (row.lm_x1, row.lm_y1, row.lm_x2, row.lm_y2)
    if not all(np.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
        return None
    return tuple(float(v) for v in b)


def face_id(sample_id: str) -> int:
    tail = str(sample_id).rpartition("#")[2]
    try:
        return int(tail)
    except ValueError:
        return 0


def visit_order(df: pd.DataFrame) -> list[int]:
    """Row positions: manifest order, except that each video group (dataset, group) is visited
    in ``image_path`` order at the position of its first row."""
    order: list[int] = []
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pos, (ds, g) in enumerate(zip(df["dataset"].astype(str), df["group"].fillna("").astype(str))):
        if g:
            groups[(ds, g)].append(pos)
    done_groups = set()
    paths = df["image_path"].astype(str).to_numpy()
    for pos, (ds, g) in enumerate(zip(df["dataset"].astype(str), df["group"].fillna("").astype(str))):
        if not g:
            order.append(pos)
        elif (ds, g) not in done_groups:
            done_groups.add((ds, g))
            order.extend(sorted(groups[(ds, g)], key=lambda p: (paths[p], p)))
    return order
