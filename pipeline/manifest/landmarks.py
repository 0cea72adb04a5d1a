"""The face box derived from 2D landmarks (manifest columns ``lm_x1, lm_y1, lm_x2, lm_y2``).

Rule: HopeNet's test-time crop (``datasets.AFLW2000`` in natanielruiz/deep-head-pose, also used
by 6DRepNet and others for AFLW2000), deterministic with ``k = 0.2``. Starting from the
min/max of the valid landmarks, the four sides are moved **in this order**, each using the
box as updated so far (HopeNet's code does exactly this)::

    x1 -= 2k · (x2 − x1)
    y1 -= 2k · (y2 − y1)
    x2 += 2k · (x2 − x1)      # x1 already moved
    y2 += 0.6k · (y2 − y1)    # y1 already moved

With ``w, h`` the landmark extent and ``k = 0.2`` this is: left ``0.4·w``, top ``0.4·h``,
right ``0.56·w``, bottom ``0.168·h``; the box is ``1.96·w`` by ``1.568·h`` (more forehead than
chin, since the 68/21 landmarks stop at the brows). Points with a negative (or non-finite)
coordinate are missing (AFLW2000's 21-point copies use −1) and are ignored. Fewer than two
valid points, or a zero extent, give no box.
"""

from __future__ import annotations

import numpy as np

K_DEFAULT = 0.2


def valid_points(points: np.ndarray) -> np.ndarray:
    """``[2, N]`` or ``[N, 2]`` landmarks → the valid ones as ``[2, M]`` float64."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or 2 not in pts.shape:
        raise ValueError(f"landmarks must be [2, N] or [N, 2], got shape {pts.shape}")
    if pts.shape[0] != 2:  # [N, 2]
        pts = pts.T
    keep = np.isfinite(pts).all(axis=0) & (pts >= 0).all(axis=0)
    return pts[:, keep]


def landmark_box(points: np.ndarray, k: float = K_DEFAULT) -> tuple[float, float, float, float] | None:
    """HopeNet-style enlarged box ``(x1, y1, x2, y2)`` from landmarks, or ``None`` if unusable."""
    pts = valid_points(points)
    if pts.shape[1] < 2:
        return None
    x1, y1 = float(pts[0].min()), float(pts[1].min())
    x2, y2 = float(pts[0].max()), float(pts[1].max())
    if x2 <= x1 or y2 <= y1:
        return None
    x1 -= 2 * k * abs(x2 - x1)
    y1 -= 2 * k * abs(y2 - y1)
    x2 += 2 * k * abs(x2 - x1)
    y2 += 0.6 * k * abs(y2 - y1)
    return x1, y1, x2, y2


def tight_extent(lm_box: tuple[float, float, float, float] | np.ndarray, k: float = K_DEFAULT
                 ) -> tuple[float, float, float, float] | None:
    """The min/max extent of the landmarks that :func:`landmark_box` enlarged into ``lm_box``
    (its exact inverse: the enlarged box is ``(1 + 2k)²·w`` by ``(1 + 2k)(1 + 0.6k)·h``).

    The manifest keeps only the enlarged box (columns ``lm_*``); relabeling compares detections
    with this tight extent, whose size does not depend on a box style."""
    x1, y1, x2, y2 = (float(v) for v in lm_box)
    if not all(np.isfinite([x1, y1, x2, y2])) or x2 <= x1 or y2 <= y1:
        return None
    w = (x2 - x1) / ((1 + 2 * k) * (1 + 2 * k))   # x1 -= 2k·w, then x2 += 2k·(1 + 2k)·w
    h = (y2 - y1) / ((1 + 2 * k) * (1 + 0.6 * k))  # y1 -= 2k·h, then y2 += 0.6k·(1 + 2k)·h
    tx1, ty1 = x1 + 2 * k * w, y1 + 2 * k * h
    return tx1, ty1, tx1 + w, ty1 + h
