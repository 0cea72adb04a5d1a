"""Writing the 300W-LP / AFLW2000 ``.mat`` label files, byte-for-byte deterministic.

What is stored (per face; all float64):

- ``Pose_Para`` 1×7: pitch, yaw, roll in **radians** (the 3DDFA angles the image was rendered
  with), tx, ty, tz (3DDFA translation, y-up frame) and the scale ``s``; a model point ``v``
  of :func:`pipeline.synth.head.landmarks_model` projects to ``s·R·v + t`` and image row
  ``H − 1 − y'`` (:func:`pipeline.core.angles.project_3ddfa`). The model unit is about half a face
  width, so ``s`` is in pixels per unit (300W-LP's BFM scale is in other units; only the
  angles are used downstream).
- ``pt2d`` 2×68: image x, y of the 68 iBUG landmarks (projected model landmarks; no
  silhouette adjustment, self-occluded points included).
- ``pt3d_68`` 3×68: as in 300W-LP, the 3D landmarks in image space: x, y equal to ``pt2d``,
  z = ``s·(R·v)_z + tz`` (larger is closer to the camera).
- ``Pose_Para_exact`` 1×7, only in a training ``.mat`` whose label is noisy
  (``synthesize.label_noise``, :mod:`.noise`): the exact ``Pose_Para`` the image was rendered
  with; ``Pose_Para`` then holds the noisy angles with the same t and s. Without noise the file
  is byte-for-byte what it was before the option existed.
- landmarks file ``<name>_pts.mat`` (300W-LP ``landmarks/`` folder): ``pts_2d`` and ``pts_3d``,
  both 68×2 = ``pt2d.T``.

``scipy.io.savemat`` stamps the creation time into the 116-byte text header; it is replaced by
a fixed text so the same seed gives identical files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io

_HEADER = b"MATLAB 5.0 MAT-file, Platform: hpekd synthesize (deterministic header)".ljust(116)


def mat_bytes(data: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, data, do_compression=False, oned_as="row")
    raw = bytearray(buf.getvalue())
    raw[:116] = _HEADER
    return bytes(raw)


def write_label_mat(path: Path, pose_para: np.ndarray, pt2d: np.ndarray, pt3d_68: np.ndarray,
                    exact: np.ndarray | None = None) -> None:
    """The label file; ``exact``: the exact Pose_Para when ``pose_para`` holds a noisy label."""
    data = {
        "Pose_Para": np.asarray(pose_para, np.float64).reshape(1, 7),
        "pt2d": np.asarray(pt2d, np.float64).reshape(2, 68),
        "pt3d_68": np.asarray(pt3d_68, np.float64).reshape(3, 68),
    }
    if exact is not None:
        data["Pose_Para_exact"] = np.asarray(exact, np.float64).reshape(1, 7)
    path.write_bytes(mat_bytes(data))


def write_pts_mat(path: Path, pt2d: np.ndarray) -> None:
    pts = np.ascontiguousarray(np.asarray(pt2d, np.float64).reshape(2, 68).T)
    path.write_bytes(mat_bytes({"pts_2d": pts, "pts_3d": pts.copy()}))
