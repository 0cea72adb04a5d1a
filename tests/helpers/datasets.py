"""Writers of tiny dataset files in the real formats (for tests/test_datasets.py).

Every writer produces what the original distribution contains, with the original names:
300W-LP / AFLW2000 ``.jpg + .mat`` (scipy ``savemat``), BIWI ``frame_XXXXX_rgb.png +
frame_XXXXX_pose.txt``, FSA-Net ``.npz``, ``aflw.sqlite`` with AFLW's table/column names, and
the paper's JSON box files.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import scipy.io


def write_tiny_image(path: Path, size: int = 32, seed: int = 0) -> Path:
    """A small real JPEG/PNG (by suffix) with some structure."""
    rng = np.random.default_rng(seed)
    img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    buf.tofile(path)
    return path


def write_pose_mat(path: Path, pose_deg: Sequence[float] | None, pt2d: np.ndarray | None = None,
                   extra: dict | None = None) -> Path:
    """300W-LP/AFLW2000 ``.mat``: ``Pose_Para`` 1×7 (pitch, yaw, roll rad, tx, ty, tz, scale), ``pt2d``."""
    data: dict = dict(extra or {})
    if pose_deg is not None:
        data["Pose_Para"] = np.array([[*np.radians(pose_deg), 100.0, 120.0, 0.0, 0.001]], dtype=np.float64)
    if pt2d is not None:
        data["pt2d"] = np.asarray(pt2d, dtype=np.float64)
    if not data:
        data["roi"] = np.zeros((1, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), data)
    return path


def face_points(n: int = 68, center: tuple[float, float] = (16, 16), half: float = 8.0, seed: int = 0) -> np.ndarray:
    """[2, n] landmarks spanning exactly center ± half in x and y."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-half, half, size=(2, n))
    pts[:, 0] = -half
    pts[:, 1] = half
    return pts + np.array(center, dtype=np.float64).reshape(2, 1)


def make_300w_lp(root: Path, items: dict[str, list[tuple[float, float, float]]], size: int = 32,
                 landmarks_folder: bool = False) -> list[str]:
    """``root/<subset>/<subset>_<i>.jpg + .mat`` (+ ``landmarks/<subset>/<name>_pts.mat``, and then
    no ``pt2d`` in the image ``.mat``). Returns the relative image paths in sorted order."""
    rels = []
    for subset, poses in items.items():
        for i, pose in enumerate(poses):
            name = f"{subset}_{i:03d}"
            write_tiny_image(root / subset / f"{name}.jpg", size, seed=i)
            pts = face_points(seed=i)
            write_pose_mat(root / subset / f"{name}.mat", pose, None if landmarks_folder else pts)
            if landmarks_folder:
                p = root / "landmarks" / subset / f"{name}_pts.mat"
                p.parent.mkdir(parents=True, exist_ok=True)
                scipy.io.savemat(str(p), {"pts_2d": pts.T, "pts_3d": pts.T})
            rels.append(f"{subset}/{name}.jpg")
    return sorted(rels)


def make_aflw2000(root: Path, poses: list[tuple[float, float, float]], size: int = 32, n_points: int = 21) -> list[str]:
    """Flat ``root/image<i>.jpg + .mat``; ``pt2d`` 2×21 with point 0 missing (−1)."""
    rels = []
    for i, pose in enumerate(poses):
        pts = face_points(n_points, seed=i)
        pts[:, 2] = -1.0
        write_tiny_image(root / f"image{i:05d}.jpg", size, seed=i)
        write_pose_mat(root / f"image{i:05d}.mat", pose, pts)
        rels.append(f"image{i:05d}.jpg")
    return rels


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def biwi_rotation_file(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """The BIWI file rotation whose HopeNet conversion gives (pitch, yaw, roll) degrees.

    HopeNet reads ``R = R_file.T`` as the standard ZYX product ``Rz(γ)·Ry(β)·Rx(α)`` with
    α = pitch, β = −yaw, γ = −roll; so ``R_file = (Rz(−roll)·Ry(−yaw)·Rx(pitch)).T``.
    """
    p, y, r = np.radians([pitch, yaw, roll])
    return (_rz(-r) @ _ry(-y) @ _rx(p)).T


def write_biwi_pose_txt(path: Path, r_file: np.ndarray, t: Sequence[float] = (12.5, -3.25, 950.0)) -> Path:
    lines = [" ".join(f"{v:.9f}" for v in row) + " " for row in r_file]
    path.write_text("\n".join(lines) + "\n\n" + " ".join(f"{v:g}" for v in t) + " \n")
    return path


def make_biwi(root: Path, sequences: dict[str, list[tuple[float, float, float]]], size: int = 24) -> list[str]:
    """``root/hpdb/NN/frame_XXXXX_rgb.png + frame_XXXXX_pose.txt`` (+ the .obj/.cal files BIWI has)."""
    rels = []
    for seq, poses in sequences.items():
        d = root / "hpdb" / seq
        d.mkdir(parents=True, exist_ok=True)
        (d / "rgb.cal").write_text("517.679 0 320\n0 517.679 240.5\n0 0 1\n")
        (root / "hpdb" / f"{seq}.obj").write_text("v 0 0 0\n")
        for i, pose in enumerate(poses):
            frame = f"frame_{i + 3:05d}"
            write_tiny_image(d / f"{frame}_rgb.png", size, seed=i)
            write_biwi_pose_txt(d / f"{frame}_pose.txt", biwi_rotation_file(*pose))
            rels.append(f"hpdb/{seq}/{frame}_rgb.png")
    return rels


def make_biwi_npz(path: Path, poses_pyr: list[tuple[float, float, float]], size: int = 16, seed: int = 0) -> np.ndarray:
    """FSA-Net ``.npz``: ``image`` [N, H, W, 3] uint8, ``pose`` [N, 3] = yaw, pitch, roll. Returns the images."""
    rng = np.random.default_rng(seed)
    images = (rng.random((len(poses_pyr), size, size, 3)) * 255).astype(np.uint8)
    pose = np.array([[y, p, r] for p, y, r in poses_pyr], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=images, pose=pose)
    return images


AFLW_SCHEMA = {
    "FaceImages": "image_id INTEGER PRIMARY KEY, db_id TEXT, file_id TEXT, filepath TEXT, bw INTEGER, width INTEGER, height INTEGER",
    "Faces": "face_id INTEGER PRIMARY KEY, file_id TEXT, db_id TEXT",
    "FacePose": "face_id INTEGER, roll REAL, pitch REAL, yaw REAL, annot_type_id INTEGER",
    "FaceRect": "face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER, annot_type_id INTEGER",
    "FeatureCoords": "face_id INTEGER, feature_id INTEGER, x REAL, y REAL, annot_type_id INTEGER",
}


def make_aflw(root: Path, images: list[tuple[str, list[tuple[int, tuple[float, float, float] | None]]]],
              size: int = 32, skip_tables: Sequence[str] = ()) -> Path:
    """``root/aflw.sqlite`` + ``root/flickr/<filepath>`` images.

    ``images``: [(filepath, [(face_id, (pitch, yaw, roll) radians or None for no FacePose row)])].
    Every face gets a FaceRect and 21 FeatureCoords spanning (8..24, 8..24).
    """
    root.mkdir(parents=True, exist_ok=True)
    db = root / "aflw.sqlite"
    con = sqlite3.connect(db)
    for table, cols in AFLW_SCHEMA.items():
        if table not in skip_tables:
            con.execute(f"CREATE TABLE {table} ({cols})")
    for k, (filepath, faces) in enumerate(images):
        file_id = Path(filepath).name
        write_tiny_image(root / "flickr" / filepath, size, seed=k)
        con.execute("INSERT INTO FaceImages (db_id, file_id, filepath, bw, width, height) VALUES ('flickr', ?, ?, 0, ?, ?)",
                    (file_id, filepath, size, size))
        for face_id, pose in faces:
            con.execute("INSERT INTO Faces VALUES (?, ?, 'flickr')", (face_id, file_id))
            if pose is not None and "FacePose" not in skip_tables:
                con.execute("INSERT INTO FacePose VALUES (?, ?, ?, ?, 1)", (face_id, pose[2], pose[0], pose[1]))
            if "FaceRect" not in skip_tables:
                con.execute("INSERT INTO FaceRect VALUES (?, 4, 4, 20, 20, 1)", (face_id,))
            if "FeatureCoords" not in skip_tables:
                for j, (x, y) in enumerate(face_points(21, seed=face_id).T):
                    con.execute("INSERT INTO FeatureCoords VALUES (?, ?, ?, ?, 1)", (face_id, j + 1, x, y))
    con.commit()
    con.close()
    return db


def write_box_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path
