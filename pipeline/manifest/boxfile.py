"""The paper's published face boxes: one JSON per dataset.

Format: ``{"<relpath>": [{"bbox": [x1, y1, x2, y2], "type": "train" | "test", "faceid": int}, …], …}``
where ``relpath`` is the image path relative to the dataset root (matched against the
manifest's ``image_path``; ``\\`` and a leading ``./`` are normalised away) and ``faceid`` the face
number (the part after ``#`` of the manifest's ``sample_id``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

EXPECTED = '{"relpath": [{"bbox": [x1, y1, x2, y2], "type": "train|test", "faceid": int}]}'
BOX_TYPES = ("train", "test")


class FileBox(NamedTuple):
    box: tuple[float, float, float, float]
    type: str


def normalize_relpath(p: str) -> str:
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def load_box_file(path: str | os.PathLike[str]) -> dict[tuple[str, int], FileBox]:
    """``{(relpath, faceid): FileBox(box=(x1, y1, x2, y2), type)}``; ``ValueError`` naming the file
    and the bad entry when the structure is not the expected one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"box file {str(p)!r} not found (expected JSON {EXPECTED})")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"box file {str(p)!r} is not valid JSON ({exc}); expected {EXPECTED}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"box file {str(p)!r}: top level is a {type(data).__name__}; expected an object {EXPECTED}")
    out: dict[tuple[str, int], FileBox] = {}
    for rel, faces in data.items():
        where = f"box file {str(p)!r}, entry {rel!r}"
        if not isinstance(faces, list):
            raise ValueError(f"{where}: expected a list of faces, got {type(faces).__name__}; format {EXPECTED}")
        for face in faces:
            if not isinstance(face, dict) or not {"bbox", "type", "faceid"} <= set(face):
                raise ValueError(f"{where}: face {face!r} needs keys bbox, type, faceid; format {EXPECTED}")
            bbox, kind, fid = face["bbox"], face["type"], face["faceid"]
            if (not isinstance(bbox, list) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
                raise ValueError(f"{where}: bbox {bbox!r} must be 4 finite numbers [x1, y1, x2, y2]")
            x1, y1, x2, y2 = (float(v) for v in bbox)
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"{where}: bbox {bbox!r} must have x2 > x1 and y2 > y1")
            if kind not in BOX_TYPES:
                raise ValueError(f"{where}: type {kind!r} must be one of {list(BOX_TYPES)}")
            if isinstance(fid, bool) or not isinstance(fid, int):
                raise ValueError(f"{where}: faceid {fid!r} must be an integer")
            key = (normalize_relpath(rel), fid)
            if key in out:
                raise ValueError(f"{where}: faceid {fid} appears twice")
            out[key] = FileBox((x1, y1, x2, y2), kind)
    return out
