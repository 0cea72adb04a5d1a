"""AFLW (``aflw.sqlite``).

Layout: ``root/aflw.sqlite`` (``sqlite:`` to change) and the images under
``root/<image_dir>/<FaceImages.filepath>`` (``image_dir`` default ``flickr``, as in the AFLW
distribution: ``aflw/data/flickr/0/image00002.jpg``).

Tables used (the real AFLW names): ``FaceImages(file_id, filepath, …)``,
``Faces(face_id, file_id, …)``, ``FacePose(face_id, roll, pitch, yaw, …)`` in radians,
``FaceRect(face_id, x, y, w, h, …)``, and optionally ``FeatureCoords(face_id, feature_id, x, y)``.
Angles: (pitch, yaw, −roll) in degrees (:func:`pipeline.core.angles.aflw_angles`). One row per face,
ordered by image (``FaceImages`` row order) then ``face_id``; ``sample_id`` =
``<name>/<image_dir>/<filepath>#<face_id>``. The landmark box comes from the 21
``FeatureCoords`` points when that table exists (same rule as AFLW2000). ``FaceRect`` must be
present (it is part of the expected schema) but is not stored: the manifest keeps ``lm_*`` for
landmark boxes only, and face boxes come from ``hpekd relabel``. A face without a
``FacePose`` row is a rejected row ("no pose in FacePose"). Protocol 2: ``split: from_file``
with the paper's AFLW.json (its 2,000 ``test`` faces; entries carry ``faceid`` = ``face_id``);
``split: auto`` instead puts the first ``test_first`` (2,000) images in test (not the paper's
split).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.core.angles import aflw_angles
from pipeline.manifest.landmarks import landmark_box
from pipeline.manifest.spec import DatasetSpec, ReadContext, make_row, reject, require_dir

log = logging.getLogger(__name__)

REQUIRED = {
    "FaceImages": ("file_id", "filepath"),
    "Faces": ("face_id", "file_id"),
    "FacePose": ("face_id", "roll", "pitch", "yaw"),
    "FaceRect": ("face_id", "x", "y", "w", "h"),
}


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}


def check_schema(con: sqlite3.Connection, path: Path) -> bool:
    """Raise naming missing tables/columns; returns whether ``FeatureCoords`` is usable."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    missing = [t for t in REQUIRED if t not in tables]
    if missing:
        raise ValueError(f"AFLW database {str(path)!r} lacks table(s) {missing}; expected tables "
                         + ", ".join(f"{t}({', '.join(c)})" for t, c in REQUIRED.items()))
    for table, cols in REQUIRED.items():
        lacking = [c for c in cols if c not in _columns(con, table)]
        if lacking:
            raise ValueError(f"AFLW database {str(path)!r}: table {table} lacks column(s) {lacking}; expected {table}({', '.join(cols)})")
    return "FeatureCoords" in tables and {"face_id", "x", "y"} <= _columns(con, "FeatureCoords")


def read_aflw(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    root = Path(spec.root)
    require_dir(root, spec, f"the AFLW folder holding {spec.sqlite_name} and {spec.image_dir_name}/")
    db = root / spec.sqlite_name
    if not db.is_file():
        raise ValueError(f"dataset {spec.name!r}: AFLW database {str(db)!r} not found (expected the aflw.sqlite of AFLW)")
    try:
        con = sqlite3.connect(f"file:{db.resolve().as_posix()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ValueError(f"AFLW database {str(db)!r} could not be opened ({exc})") from exc
    try:
        try:
            has_coords = check_schema(con, db)
            images = con.execute("SELECT file_id, filepath FROM FaceImages ORDER BY rowid").fetchall()
            faces = con.execute("SELECT face_id, file_id FROM Faces ORDER BY face_id").fetchall()
            poses: dict[int, tuple[float, float, float]] = {}
            for face_id, pitch, yaw, roll in con.execute("SELECT face_id, pitch, yaw, roll FROM FacePose ORDER BY rowid"):
                poses.setdefault(face_id, (pitch, yaw, roll))
            coords: dict[int, list[tuple[float, float]]] = defaultdict(list)
            if has_coords:
                for face_id, x, y in con.execute("SELECT face_id, x, y FROM FeatureCoords"):
                    coords[face_id].append((x, y))
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"AFLW database {str(db)!r} could not be read as SQLite ({exc}); expected the aflw.sqlite of AFLW") from exc
    finally:
        con.close()

    order = {}
    for file_id, filepath in images:
        order.setdefault(file_id, (len(order), str(filepath)))
    by_image: dict[object, list[int]] = defaultdict(list)
    orphans = 0
    for face_id, file_id in faces:
        if file_id in order:
            by_image[file_id].append(face_id)
        else:
            orphans += 1
    if orphans:
        log.warning("%s: %d face(s) in Faces reference a file_id missing from FaceImages (no image: not indexed)", spec.name, orphans)
    image_dir = spec.image_dir_name.strip("/")
    rows: list[dict] = []
    for file_id, (rank, filepath) in sorted(order.items(), key=lambda kv: kv[1][0]):
        if spec.split == "auto":
            split = "test" if rank < spec.test_first_n else "train"
        else:
            split = spec.split
        rel = f"{image_dir}/{filepath}" if image_dir else filepath
        for face_id in by_image.get(file_id, []):
            pose = poses.get(face_id)
            pts = coords.get(face_id)
            box = landmark_box(np.array(pts, dtype=np.float64)) if pts and len(pts) >= 2 else None
            if pose is None or any(v is None for v in pose):
                rows.append(reject(make_row(spec, spec.root, rel, split, face=face_id, lm_box=box), "no pose in FacePose"))
                continue
            rows.append(make_row(spec, spec.root, rel, split, face=face_id, angles=aflw_angles(*pose), lm_box=box))
    if not rows:
        raise ValueError(f"dataset {spec.name!r}: AFLW database {str(db)!r} lists no faces with an image (tables Faces/FaceImages empty?)")
    return rows
