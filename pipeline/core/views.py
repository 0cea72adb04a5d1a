"""The one View type of the project (a flip flag and an in-plane rotation angle) and how views
are drawn: randomly per training sample, or keyed by (seed, sample_id, view) for the teacher-label
store (docs/design.md §6).

Every training sample gets ``V`` views. View 0 is the identity; view ``v > 0`` is drawn from
a numpy generator seeded by a stable hash of ``(seed, sample_id, v)``: a horizontal flip with
probability ``flip_prob`` and a rotation uniform in ``[-max_angle, max_angle]`` degrees (the
pose-changing augmentation of docs/design.md §9). Keyed draws make a view independent of row order,
of which process computes it and of how many views were asked for, so the teacher job and the
student reproduce the same view from nothing but the sample id.

The angle is rounded to float32 *before* use, because the store keeps views as float32 and
the student replays what is stored: teacher and student then warp with the same matrix.

Labels that would leave [-99, 99]: near |yaw| = 99° a rotation can move the corrected label
out of the range the heads cover (e.g. yaw 95° rotated by 15° is yaw 105.8°). Such a view
keeps its flip and drops its rotation (:func:`fit_view`): the sample is used unrotated rather
than with a target the bins cannot hold. The rule is a pure function of the view and the
label, applied wherever a view meets its label — :func:`views_array` (given the labels, as the
teacher job does), :func:`pipeline.data.transforms.geometric` and the training dataset — and it
is idempotent, so the student replaying a stored (already fitted) view gets the same view the
teacher saw.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from pipeline.core.angles import THETA, augment_pose, in_range

FLIP_PROB = 0.5
MAX_ANGLE = 15.0


@dataclass(frozen=True)
class View:
    """Explicit parameters of one geometric augmentation; ``View()`` is the identity."""

    flip: bool = False
    angle: float = 0.0  # degrees, counter-clockwise as displayed

    def pose(self, pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
        return augment_pose(pitch, yaw, roll, self.flip, self.angle)


def fit_view(view: View, pose: tuple[float, float, float] | None, theta: float = THETA) -> View:
    """``view``, or ``view`` without its rotation when the rotated label leaves ±``theta``
    (the flip alone keeps a label in range). ``pose=None`` or a non-finite pose (an unlabelled
    image: no label to keep in range): ``view`` unchanged."""
    if (pose is None or not view.angle or not all(math.isfinite(a) for a in pose)
            or in_range(*view.pose(*pose), theta=theta)):
        return view
    return View(flip=view.flip, angle=0.0)


def random_view(rng: np.random.Generator, flip_p: float = 0.5, max_angle: float = 15.0) -> View:
    """Draw a view: flip with probability ``flip_p``, angle uniform in ±``max_angle``."""
    flip = bool(rng.random() < flip_p)
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle > 0 else 0.0
    return View(flip=flip, angle=angle)


def _generator(seed: int, sample_id: str, view: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{sample_id}/{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def draw_view(
    sample_id: str, view: int, seed: int, flip_prob: float = FLIP_PROB, max_angle: float = MAX_ANGLE
) -> View:
    """View ``view`` of ``sample_id``; ``view == 0`` is the identity."""
    if view == 0:
        return View()
    rng = _generator(seed, sample_id, view)
    flip = bool(rng.random() < flip_prob)
    angle = float(np.float32(rng.uniform(-max_angle, max_angle)))
    return View(flip=flip, angle=angle)


def views_for(
    sample_id: str, n_views: int, seed: int, flip_prob: float = FLIP_PROB, max_angle: float = MAX_ANGLE
) -> list[View]:
    """The ``n_views`` views of one sample (view 0 first, the identity)."""
    if n_views < 1:
        raise ValueError(f"number of views {n_views!r} must be >= 1 (view 0 is the identity)")
    return [draw_view(sample_id, v, seed, flip_prob, max_angle) for v in range(n_views)]


def views_array(
    sample_ids: list[str], n_views: int, seed: int, flip_prob: float = FLIP_PROB, max_angle: float = MAX_ANGLE,
    poses: np.ndarray | None = None,
) -> np.ndarray:
    """float32 [N, V, 2]: (flip flag 0/1, angle in degrees) as stored in the label store.

    ``poses`` [N, 3] (the labels, degrees): each view is passed through :func:`fit_view`."""
    if poses is not None and np.shape(poses) != (len(sample_ids), 3):
        raise ValueError(f"poses must be [N, 3] for {len(sample_ids)} samples, got shape {np.shape(poses)}")
    out = np.zeros((len(sample_ids), n_views, 2), dtype=np.float32)
    for i, sid in enumerate(sample_ids):
        pose = None if poses is None else tuple(float(a) for a in poses[i])
        for v, view in enumerate(views_for(sid, n_views, seed, flip_prob, max_angle)):
            view = fit_view(view, pose)  # type: ignore[arg-type]
            out[i, v] = (1.0 if view.flip else 0.0, view.angle)
    return out


def view_from_row(row: np.ndarray) -> View:
    """Rebuild a :class:`View` from one stored ``views[i, v]`` row (flip flag, angle)."""
    return View(flip=bool(row[0] >= 0.5), angle=float(row[1]))
