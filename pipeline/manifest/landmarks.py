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
