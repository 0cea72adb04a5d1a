"""Which box belongs to a manifest row: the labelled face among detections and the visit order
of video frames (the rule is described in :mod:`pipeline.relabel.job`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.manifest.boxfile import face_number
from pipeline.manifest.landmarks import tight_extent
from pipeline.relabel.detect import box_iou

MISMATCH = "face does not match landmarks"
MISS = "no face detected"


def box_overlap(boxes: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Overlap coefficient of each of ``boxes`` [N, 4] with ``box``: intersection area over the
    smaller of the two areas, in [0, 1]. It is 1 when one box contains the other, so a tight and
    a loose box of the same face score alike (unlike IoU, which a 1.8×1.5 larger box caps at 0.37)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = (float(v) for v in box)
    iw = np.clip(np.minimum(b[:, 2], x2) - np.maximum(b[:, 0], x1), 0.0, None)
    ih = np.clip(np.minimum(b[:, 3], y2) - np.maximum(b[:, 1], y1), 0.0, None)
    area = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    smaller = np.minimum(area, max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
    return np.where(smaller > 0, iw * ih / np.where(smaller > 0, smaller, 1.0), 0.0)


def _center(b: Sequence[float]) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0])


# which rule chose a detection (relabel's summary counts them)
RULES = ("landmarks", "given box", "previous frame", "centre")


def rule_for(landmark_box: Sequence[float] | None, given_box: Sequence[float] | None,
             previous_box: Sequence[float] | None) -> str:
    """The rule :func:`select_face` applies for these references (one of :data:`RULES`)."""
    if landmark_box is not None and tight_extent(landmark_box) is not None:
        return "landmarks"
    if given_box is not None:
        return "given box"
    return "previous frame" if previous_box is not None else "centre"


def select_face(dets: np.ndarray, w: int, h: int, landmark_box: Sequence[float] | None = None,
                previous_box: Sequence[float] | None = None, min_overlap: float = 0.5,
                given_box: Sequence[float] | None = None) -> tuple[int | None, float, str]:
    """Pick the labelled face among detections ``dets`` [N, 5] (x1, y1, x2, y2, score).

    Returns ``(index or None, overlap with the reference box or NaN, reason if None)``; the
    reference is the tight landmark extent, else ``given_box`` (a face box that came with the
    dataset, e.g. a table's ``x1..y2``); the rule is the one in :mod:`pipeline.relabel.job`.
    Reasons start with :data:`MISS` (nothing detected) or :data:`MISMATCH` (faces found, none of
    them the labelled one).
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if len(dets) == 0:
        return None, math.nan, MISS
    rule = rule_for(landmark_box, given_box, previous_box)
    if rule in ("landmarks", "given box"):
        ref = tight_extent(landmark_box) if rule == "landmarks" else tuple(float(v) for v in given_box)  # type: ignore[union-attr]
        ov = box_overlap(dets[:, :4], ref)
        iou = box_iou(dets[:, :4], ref)[:, 0]
        i = int(np.lexsort((-iou, -np.round(ov, 2)))[0])  # most overlap; then the closest in size and place
        if ov[i] < min_overlap:
            what = "the landmark extent" if rule == "landmarks" else "the given face box"
            return None, float(ov[i]), (f"{MISMATCH}: best overlap {ov[i]:.2f} with {what} "
                                        f"< min_overlap {min_overlap:g} ({len(dets)} face(s) found)")
        return i, float(ov[i]), ""
    centres = (dets[:, 0:2] + dets[:, 2:4]) / 2.0
    if previous_box is not None:
        d = np.linalg.norm(centres - _center(previous_box), axis=1)
        return int(np.argmin(d)), math.nan, ""
    half_diag = max(math.hypot(w, h) / 2.0, 1e-6)
    d = np.linalg.norm(centres - np.array([w / 2.0, h / 2.0]), axis=1)
    rank = dets[:, 4] * (1.0 - np.clip(d / half_diag, 0.0, 1.0))
    return int(np.argmax(rank)), math.nan, ""


def _finite_box(b: tuple) -> tuple[float, float, float, float] | None:
    if not all(np.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
        return None
    return tuple(float(v) for v in b)  # type: ignore[return-value]


def row_landmark_box(row: Any) -> tuple[float, float, float, float] | None:
    return _finite_box((row.lm_x1, row.lm_y1, row.lm_x2, row.lm_y2))


def row_given_box(row: Any) -> tuple[float, float, float, float] | None:
    """The face box that came with the dataset (manifest ``face_*``, e.g. a table's x1..y2)."""
    return _finite_box((row.face_x1, row.face_y1, row.face_x2, row.face_y2))


def face_id(sample_id: str) -> int:
    """The face number of a row (see :func:`pipeline.manifest.boxfile.face_number`)."""
    return face_number(sample_id)


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
