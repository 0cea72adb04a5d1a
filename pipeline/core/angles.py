"""Angle conventions of the whole project (docs/design.md §3).

Pose is (pitch, yaw, roll) in degrees, the 300W-LP convention. The rotation is the one
3DDFA used to generate 300W-LP (``angle2matrix_3ddfa``): ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``
with the sign pattern below; a model point ``v`` lands at ``s * R @ v + t`` and the image row is
``H - 1 - y'``. Every reader, the synthetic renderer, the augmentation and the predictor use
these functions, so a label means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np

THETA = 99.0  # angle range kept for training/testing, degrees (docs/design.md §3, §4)
ANGLES = ("pitch", "yaw", "roll")  # the order of every [.., 3] angle axis in the project


def rotation_3ddfa(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """3×3 rotation from angles in **radians**, exactly 3DDFA's ``angle2matrix``."""
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cz, sz = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]], dtype=np.float64)
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]], dtype=np.float64)
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]], dtype=np.float64)
    return rx @ ry @ rz


def rotation_from_degrees(pitch: float, yaw: float, roll: float) -> np.ndarray:
    return rotation_3ddfa(*np.radians([pitch, yaw, roll]))


def _wrap(a: np.ndarray | float) -> np.ndarray:
    """Angles in degrees wrapped to [-180, 180)."""
    return (np.asarray(a, dtype=np.float64) + 180.0) % 360.0 - 180.0


def euler_twin(pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
    """The other Euler triple of the same rotation, wrapped to [-180, 180):
    ``Rx(p + 180)·Ry(180 − y)·Rz(r + 180) = Rx(p)·Ry(y)·Rz(r)`` (checked in the tests)."""
    twin = _wrap([pitch + 180.0, 180.0 - yaw, roll + 180.0])
    return tuple(float(v) for v in twin)  # type: ignore[return-value]


def angle_distance(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Sum over the three angles of the wrapped absolute difference, in degrees."""
    return float(np.abs(_wrap(np.subtract(a, b))).sum())


def angles_from_rotation(
    r: np.ndarray, reference: tuple[float, float, float] | None = None
) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_3ddfa`, returns (pitch, yaw, roll) in **degrees**.

    From the expanded product: R[0,2] = -sin(yaw), R[0,:2] = cos(yaw)·(cos, sin)(roll),
    R[1:,2] = cos(yaw)·(sin, cos)(pitch). Every rotation has two Euler triples: the one with
    |yaw| ≤ 90° returned here, and its :func:`euler_twin` with |yaw| ≥ 90°. With ``reference``
    (e.g. the label before an augmentation), the triple nearest to it (:func:`angle_distance`)
    is returned, so labels with 90° < |yaw| ≤ 99° stay continuous (docs/design.md §3).
    """
    r = np.asarray(r, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[0, 2], -1.0, 1.0))
    roll = np.arctan2(r[0, 1], r[0, 0])
    pitch = np.arctan2(r[1, 2], r[2, 2])
    out = tuple(float(v) for v in np.degrees([pitch, yaw, roll]))
    if reference is not None:
        twin = euler_twin(*out)
        if angle_distance(twin, reference) < angle_distance(out, reference):
            return twin
    return out  # type: ignore[return-value]


def project_3ddfa(
    points: np.ndarray, pitch: float, yaw: float, roll: float, scale: float,
    t: tuple[float, float, float] | np.ndarray, height: int,
) -> np.ndarray:
    """Project model points [3, N] with the 3DDFA weak perspective; returns [2, N] image (x, y).

    Angles in degrees. ``t`` is the 3DDFA translation (in the y-up frame).
    """
    r = rotation_from_degrees(pitch, yaw, roll)
    v = scale * (r @ np.asarray(points, dtype=np.float64)) + np.asarray(t, dtype=np.float64).reshape(3, 1)
    return np.stack([v[0], height - 1 - v[1]])


def flip_pose(pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
    """Pose after a horizontal image flip: mirroring x conjugates R by diag(-1, 1, 1)."""
    return pitch, -yaw, -roll


def rotate_pose(pitch: float, yaw: float, roll: float, angle: float) -> tuple[float, float, float]:
    """Pose after rotating the image by ``angle`` degrees counter-clockwise as displayed
    (OpenCV's ``getRotationMatrix2D`` sign).

    In the y-up model frame a displayed CCW turn is a CCW turn about the camera axis, so the
    new rotation is ``Rz_ccw(angle) @ R``. Re-extracting the angles is exact; simply adding to
    roll is exact only at pitch = yaw = 0 (where roll decreases by ``angle``). Of the two
    Euler triples of the new rotation, the one reached continuously from the input pose as the
    angle grows from 0 is returned (at |yaw| < 60° simply the one nearest the input pose).

    Near |yaw| = 90° pitch and roll are ill-conditioned: each degree of rotation moves them by
    about 1/|cos(yaw)| degrees (11.5° at yaw 95°), in the direction that leaves the image
    almost unchanged; the result is still exact.
    """
    r0 = rotation_from_degrees(pitch, yaw, roll)
    out = angles_from_rotation(_turn(angle) @ r0, reference=(pitch, yaw, roll))
    if max(abs(yaw), abs(out[1])) < CONTINUITY_YAW:
        return out
    # Near |yaw| = 90° the nearest triple to the *unrotated* label can be the far branch: pitch and
    # roll move ~1/cos(yaw) degrees per degree of rotation, ~90° over 11° at |yaw| ≈ 83°. Follow
    # the branch from angle 0 in small steps instead, so the label is continuous in the angle.
    steps = max(1, int(np.ceil(abs(angle) / CONTINUITY_STEP)))
    cur = (float(pitch), float(yaw), float(roll))
    for k in range(1, steps + 1):
        cur = angles_from_rotation(_turn(angle * k / steps) @ r0, reference=cur)
    return cur


# |yaw| (degrees) from which rotate_pose follows the Euler branch step by step, and the step
# (degrees of in-plane rotation): below 60° pitch and roll move < 2° per degree, the two
# triples stay > 100° apart and the nearest one is the continuous one.
CONTINUITY_YAW = 60.0
CONTINUITY_STEP = 0.25


def _turn(angle: float) -> np.ndarray:
    """Counter-clockwise (as displayed) in-plane rotation by ``angle`` degrees, in the y-up frame."""
    a = np.radians(angle)
    ca, sa = np.cos(a), np.sin(a)
    return np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]], dtype=np.float64)


def augment_pose(pitch: float, yaw: float, roll: float, flip: bool, angle: float) -> tuple[float, float, float]:
    """Pose after the project's geometric augmentation: flip first, then rotation (the Euler
    triple nearest the flipped pose). May leave [-99, 99] for |yaw| near 99°: see
    :func:`pipeline.core.views.fit_view` for what the augmentation does then."""
    if flip:
        pitch, yaw, roll = flip_pose(pitch, yaw, roll)
    if angle:
        pitch, yaw, roll = rotate_pose(pitch, yaw, roll, angle)
    return pitch, yaw, roll


def biwi_angles(r_file: np.ndarray) -> tuple[float, float, float]:
    """BIWI ``frame_XXXXX_pose.txt`` rotation → (pitch, yaw, roll) degrees (HopeNet's conversion)."""
    r = np.asarray(r_file, dtype=np.float64).T
    pitch = np.arctan2(r[2, 1], r[2, 2])
    yaw = -np.arctan2(-r[2, 0], np.sqrt(r[2, 1] ** 2 + r[2, 2] ** 2))
    roll = -np.arctan2(r[1, 0], r[0, 0])
    return tuple(float(v) for v in np.degrees([pitch, yaw, roll]))  # type: ignore[return-value]


def aflw_angles(pitch_rad: float, yaw_rad: float, roll_rad: float) -> tuple[float, float, float]:
    """AFLW ``FacePose`` (radians) → project convention (pitch, yaw, −roll) in degrees."""
    return float(np.degrees(pitch_rad)), float(np.degrees(yaw_rad)), float(-np.degrees(roll_rad))


def in_range(pitch: float, yaw: float, roll: float, theta: float = THETA) -> bool:
    return all(-theta <= a <= theta for a in (pitch, yaw, roll))
