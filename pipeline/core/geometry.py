"""The one geometric transform of the project: box crop + flip + in-plane rotation as a
single affine warp.

Training (stage 1), the teacher-label job (which builds the padded region Z of docs/design.md §5),
the student's view replay and inference all build their input with :func:`crop_matrix` and
:func:`warp`, so a view is reproduced exactly from its explicit parameters (flip, angle).

Coordinates are continuous: pixel ``i`` covers ``[i, i + 1)``. The flip and the rotation turn
the *source* image about the box center before the box is scaled to the network input, so
the pose correction of :func:`pipeline.core.angles.augment_pose` is exact even for non-square
boxes (a rotation after anisotropic scaling would shear the face).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.views import View

MIN_BOX_SIZE = 4.0  # px of width/height a clipped box must keep (relabel.min_box_size default, the predictor)


def validate_box(box: tuple[float, float, float, float] | np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])) or x2 - x1 < 1 or y2 - y1 < 1:
        raise ValueError(f"degenerate face box {box!r}: need x2 - x1 >= 1 and y2 - y1 >= 1")
    return x1, y1, x2, y2


def clip_box(
    box: tuple[float, float, float, float] | np.ndarray, width: int, height: int, min_size: float = MIN_BOX_SIZE
) -> tuple[float, float, float, float] | None:
    """The box clipped to a ``width`` × ``height`` image, or ``None`` when it is not finite or
    less than ``min_size`` px of width or height is left. Relabeling (training boxes) and the
    predictor (inference boxes) both use this rule."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])):
        return None
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < max(min_size, 1.0) or y2 - y1 < max(min_size, 1.0):
        return None
    return x1, y1, x2, y2


def crop_matrix(
    box: tuple[float, float, float, float] | np.ndarray,
    size: tuple[int, int],
    pad: int = 0,
    view: View = View(),
) -> np.ndarray:
    """2×3 matrix mapping source pixels to the output of shape ``(h + 2·pad, w + 2·pad)``.

    With ``pad = p`` this is the region Z of docs/design.md §5: the box scaled by ``r_x = w/(x2-x1)``,
    ``r_y = h/(y2-y1)`` and extended by ``p`` output pixels on each side; the crop at offset
    ``(p, p)`` of Z equals the ``pad = 0`` output.
    """
    x1, y1, x2, y2 = validate_box(box)
    h, w = size
    rx, ry = w / (x2 - x1), h / (y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # Source-space turn about the box center: flip x, then rotate (CCW as displayed, y down).
    a = np.radians(view.angle)
    ca, sa = np.cos(a), np.sin(a)
    rot = np.array([[ca, sa], [-sa, ca]])
    flip = np.diag([-1.0 if view.flip else 1.0, 1.0])
    turn = rot @ flip
    # continuous coords: dst = S·(turn·(src - c)) + (c - (x1, y1))·r + p
    scale = np.diag([rx, ry])
    lin = scale @ turn
    center = np.array([cx, cy])
    offset = scale @ (center - np.array([x1, y1])) + pad - lin @ center
    m = np.hstack([lin, offset[:, None]])
    # pixel-index form: (idx + 0.5) in continuous coordinates on both sides
    m[:, 2] += lin @ np.array([0.5, 0.5]) - 0.5
    return m.astype(np.float64)


def warp(image: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Apply a :func:`crop_matrix`; pixels outside the source are 0 (docs/design.md §5)."""
    h, w = out_hw
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def crop(
    image: np.ndarray,
    box: tuple[float, float, float, float] | np.ndarray,
    size: tuple[int, int],
    pad: int = 0,
    view: View = View(),
) -> np.ndarray:
    """The network input (``pad = 0``) or the padded region Z for the ensemble (``pad = p``)."""
    h, w = size
    return warp(image, crop_matrix(box, size, pad, view), (h + 2 * pad, w + 2 * pad))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map [2, N] pixel-index points with a 2×3 matrix (for landmark checks)."""
    pts = np.asarray(points, dtype=np.float64)
    return matrix[:, :2] @ pts + matrix[:, 2:3]
