"""300W-LP and AFLW2000(-3D): one image + one ``.mat`` per face.

Layouts (``root`` = the dataset folder as given in params):

- 300W-LP: ``root/<subset>/<name>.jpg`` + ``root/<subset>/<name>.mat`` for each subset of
  ``subsets`` (default AFW, AFW_Flip, HELEN, HELEN_Flip, IBUG, IBUG_Flip, LFPW, LFPW_Flip), and
  optionally ``root/landmarks/<subset>/<name>_pts.mat`` (``pts_2d`` 68×2).
- AFLW2000: flat, ``root/<name>.jpg`` + ``root/<name>.mat``.

The ``.mat`` holds ``Pose_Para`` (1×7: pitch, yaw, roll in radians, tx, ty, tz, scale) and
``pt2d`` (2×68; 2×21 in some AFLW2000 copies, negative = missing). Angles are
``degrees(Pose_Para[0, :3])`` (docs/design.md §3). The landmark box comes from ``pt2d`` (or, when the
image ``.mat`` has none, from ``landmarks/<subset>/<name>_pts.mat``), see
:mod:`pipeline.manifest.landmarks`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io

from pipeline.manifest.landmarks import landmark_box
from pipeline.manifest.spec import (
    IMAGE_EXTS,
    DatasetSpec,
    ReadContext,
    fixed_split,
    make_row,
    require_dir,
)

log = logging.getLogger(__name__)

POSE_EXPECTED = "'Pose_Para' (1x7: pitch, yaw, roll [rad], tx, ty, tz, scale)"


class MatProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_pose_mat(mat_path: Path) -> tuple[tuple[float, float, float], np.ndarray | None]:
    """``.mat`` → ((pitch, yaw, roll) degrees, pt2d [2, N] or None). Raises :class:`MatProblem`."""
    if not mat_path.is_file():
        raise MatProblem("no .mat annotation", f"annotation {str(mat_path)!r} not found (expected a .mat with {POSE_EXPECTED} next to the image)")
    try:
        mat = scipy.io.loadmat(str(mat_path), variable_names=["Pose_Para", "pt2d"])
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for broken files
        raise MatProblem("unreadable .mat", f"annotation {str(mat_path)!r} could not be read as a MATLAB .mat file ({exc}); expected {POSE_EXPECTED}") from exc
    if "Pose_Para" not in mat:
        raise MatProblem("no Pose_Para in .mat", f"annotation {str(mat_path)!r} has no {POSE_EXPECTED}")
    try:
        pose = np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise MatProblem("bad Pose_Para in .mat", f"annotation {str(mat_path)!r}: Pose_Para is not numeric; expected {POSE_EXPECTED}") from exc
    if pose.size < 3:
        raise MatProblem("bad Pose_Para in .mat", f"annotation {str(mat_path)!r}: Pose_Para has {pose.size} values; expected {POSE_EXPECTED}")
    angles = tuple(float(v) for v in np.degrees(pose[:3]))
    pt2d = None
    if "pt2d" in mat:
        pts = np.asarray(mat["pt2d"], dtype=np.float64)
        if pts.ndim == 2 and 2 in pts.shape:
            pt2d = pts if pts.shape[0] == 2 else pts.T
        else:
            log.debug("%s: pt2d has shape %s, ignored", mat_path, pts.shape)
    return angles, pt2d  # type: ignore[return-value]


def _landmarks_file(path: Path) -> np.ndarray | None:
    """300W-LP ``landmarks/<subset>/<name>_pts.mat`` → ``pts_2d`` as [2, N] (None if absent/unusable)."""
    if not path.is_file():
        return None
    try:
        pts = np.asarray(scipy.io.loadmat(str(path), variable_names=["pts_2d"]).get("pts_2d"), dtype=np.float64)
    except Exception:  # noqa: BLE001 - the landmark file is optional
        log.debug("%s: unreadable landmark file, ignored", path)
        return None
    if pts.ndim != 2 or 2 not in pts.shape:
        return None
    return pts if pts.shape[0] == 2 else pts.T


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _row(spec: DatasetSpec, ctx: ReadContext, root: Path, image: Path, split: str, lm_file: Path | None) -> dict:
    rel = image.relative_to(root).as_posix()
    try:
        angles, pt2d = read_pose_mat(image.with_suffix(".mat"))
    except MatProblem as p:
        return ctx.problem(make_row(spec, spec.root, rel, split), p.reason, p.detail)
    if pt2d is None and lm_file is not None:
        pt2d = _landmarks_file(lm_file)
    box = landmark_box(pt2d) if pt2d is not None else None
    return make_row(spec, spec.root, rel, split, angles=angles, lm_box=box)


def read_300w_lp(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    root = Path(spec.root)
    require_dir(root, spec, "the 300W-LP folder with subset folders " + ", ".join(spec.subset_list))
    split = fixed_split(spec, "train")
    rows: list[dict] = []
    for subset in spec.subset_list:
        folder = root / subset
        require_dir(folder, spec, f"300W-LP subset folder {subset!r} with <name>.jpg + <name>.mat; "
                    "set `subsets:` to the folders you have")
        images = _images(folder)
        if not images:
            raise ValueError(f"dataset {spec.name!r}: no images (.jpg/.png) in {str(folder)!r} (expected <name>.jpg + <name>.mat)")
        lm_dir = root / "landmarks" / subset
        for image in images:
            rows.append(_row(spec, ctx, root, image, split, lm_dir / f"{image.stem}_pts.mat"))
    return rows


def read_aflw2000(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    root = Path(spec.root)
    require_dir(root, spec, "the AFLW2000 folder with <name>.jpg + <name>.mat")
    split = fixed_split(spec, "test")
    images = _images(root)
    if not images:
        raise ValueError(f"dataset {spec.name!r}: no images (.jpg/.png) in {str(root)!r} (expected <name>.jpg + <name>.mat)")
    return [_row(spec, ctx, root, image, split, None) for image in images]
