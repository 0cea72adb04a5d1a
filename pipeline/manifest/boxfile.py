"""The paper's published face boxes (``data/*.json`` of AndreySheka/kd_oe_hpe), read as published.

Format (docs/design.md §7): ``{"<relpath>": [{"bbox": [x1, y1, x2, y2], "type"?: "train" | "test",
"faceid"?: int, …}, …], …}``. ``bbox`` is required; ``type`` (the protocol split) and ``faceid``
(AFLW's ``face_id``) are optional; any other key is ignored. As published: ``AFLW2000.json`` has
``bbox`` only (keys ``image00002.jpg``), ``BIWI.json`` ``bbox`` + ``type`` (keys
``01/frame_00004_rgb.png``, relative to ``hpdb/``), ``AFLW.json`` ``bbox`` + ``type`` + ``faceid``
(keys ``0/image00002.jpg``, relative to ``flickr/``; several faces per image in places).

Matching an entry to manifest rows (:func:`match_box_file`): its ``relpath`` (``\\`` and a
leading ``./`` normalised away) must equal the row's ``image_path`` or a suffix of it at a
folder boundary (``01/frame_00004_rgb.png`` matches ``hpdb/01/frame_00004_rgb.png``; a key
without its file extension matches too). A relpath that fits two different images is an error.
An entry with ``faceid`` belongs to the row with that face number (the part after ``#`` of
``sample_id``); an entry without one belongs to the image's only face — an image with several
faces, or several entries, without ``faceid`` is an error naming the entry. Entries that fit no
row are returned (``unmatched``) for the caller to report.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

EXPECTED = '{"relpath": [{"bbox": [x1, y1, x2, y2], "type"?: "train|test", "faceid"?: int}]}'
BOX_TYPES = ("train", "test")
EXAMPLES = 5  # how many unmatched names a report shows


class FileBox(NamedTuple):
    box: tuple[float, float, float, float]
    type: str | None = None
    faceid: int | None = None


def normalize_relpath(p: str) -> str:
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def face_number(sample_id: str) -> int:
    """The face number of a manifest row: the integer after ``#`` in its ``sample_id`` (0 if none)."""
    tail = str(sample_id).rpartition("#")[2]
    try:
        return int(tail)
    except ValueError:
        return 0


def _face(where: str, face: object) -> FileBox:
    if not isinstance(face, dict) or "bbox" not in face:
        raise ValueError(f"{where}: face {face!r} has no 'bbox'; format {EXPECTED}")
    bbox, kind, fid = face["bbox"], face.get("type"), face.get("faceid")
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise ValueError(f"{where}: bbox {bbox!r} must be 4 finite numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: bbox {bbox!r} must have x2 > x1 and y2 > y1")
    if kind is not None and kind not in BOX_TYPES:
        raise ValueError(f"{where}: type {kind!r} must be one of {list(BOX_TYPES)}")
    if fid is not None and (isinstance(fid, bool) or not isinstance(fid, int)):
        raise ValueError(f"{where}: faceid {fid!r} must be an integer")
    return FileBox((x1, y1, x2, y2), kind, fid)


def load_box_file(path: str | os.PathLike[str]) -> dict[str, list[FileBox]]:
    """``{relpath: [FileBox, …]}`` in file order; ``ValueError`` naming the file and the bad entry."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"box file {str(p)!r} not found (expected JSON {EXPECTED})")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"box file {str(p)!r} is not valid JSON ({exc}); expected {EXPECTED}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"box file {str(p)!r}: top level is a {type(data).__name__}; expected an object {EXPECTED}")
    out: dict[str, list[FileBox]] = {}
    for rel, faces in data.items():
        where = f"box file {str(p)!r}, entry {rel!r}"
        if not isinstance(faces, list):
            raise ValueError(f"{where}: expected a list of faces, got {type(faces).__name__}; format {EXPECTED}")
        boxes = [_face(where, face) for face in faces]
        ids = [b.faceid for b in boxes if b.faceid is not None]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"{where}: faceid {dup[0]} appears twice")
        key = normalize_relpath(rel)
        if key in out:
            raise ValueError(f"{where}: the same image appears twice (as {key!r})")
        out[key] = boxes
    return out


@dataclass
class BoxFileMatch:
    """Result of :func:`match_box_file`: ``by_row`` row position → its entry."""

    by_row: dict[int, FileBox] = field(default_factory=dict)
    entries: int = 0                                     # faces listed in the file
    unmatched: list[str] = field(default_factory=list)   # "relpath" or "relpath#faceid" that fit no row

    def summary(self) -> dict:
        return {"entries": self.entries, "matched": len(self.by_row), "unmatched": len(self.unmatched),
                "unmatched_examples": self.unmatched[:EXAMPLES]}


def _suffixes(image_path: str) -> list[str]:
    parts = image_path.split("/")
    out = ["/".join(parts[i:]) for i in range(len(parts))]
    return out + [os.path.splitext(s)[0] for s in out if os.path.splitext(s)[1]]


def match_box_file(
    entries: dict[str, list[FileBox]], image_paths: Sequence[str], faces: Sequence[int], where: str,
) -> BoxFileMatch:
    """Assign the entries of one box file to manifest rows (``image_paths[i]``, ``faces[i]`` =
    row i's image path and face number); the rule is in the module docstring. ``where`` names
    the file in errors."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for pos, ip in enumerate(image_paths):
        rows_of[normalize_relpath(ip)].append(pos)
    by_suffix: dict[str, set[str]] = defaultdict(set)
    for ip in rows_of:
        for s in _suffixes(ip):
            by_suffix[s].add(ip)
    out = BoxFileMatch()
    for rel, boxes in entries.items():
        out.entries += len(boxes)
        images = by_suffix.get(rel, set())
        if len(images) > 1:
            raise ValueError(f"{where}: entry {rel!r} fits several images {sorted(images)[:3]}; "
                             "keys must be image paths relative to the dataset's image folder")
        if not images:
            out.unmatched.extend(rel if b.faceid is None else f"{rel}#{b.faceid}" for b in boxes)
            continue
        image = next(iter(images))
        rows = rows_of[image]
        for b in boxes:
            if b.faceid is None:
                if len(boxes) > 1 or len(rows) > 1:
                    n = max(len(boxes), len(rows))
                    raise ValueError(
                        f"{where}: entry {rel!r} has no faceid but image {image!r} has {n} faces "
                        f"(face ids in the manifest: {sorted(int(faces[r]) for r in rows)[:5]}); "
                        "give each face its faceid")
                pos = rows[0]
            else:
                hit = [r for r in rows if int(faces[r]) == b.faceid]
                if not hit:
                    out.unmatched.append(f"{rel}#{b.faceid}")
                    continue
                pos = hit[0]
            if pos in out.by_row:
                raise ValueError(f"{where}: entry {rel!r} gives face {int(faces[pos])} of {image!r} two boxes")
            out.by_row[pos] = b
    return out


def no_match_message(where: str, dataset: str, entries: dict[str, list[FileBox]], image_paths: Sequence[str]) -> str:
    """The one-line error when a box file matched no row of a dataset."""
    keys = list(entries)[:2]
    paths = list(dict.fromkeys(image_paths))[:2]
    return (f"{where} matched no row of dataset {dataset!r}: none of its {sum(len(v) for v in entries.values())} "
            f"entries (e.g. {keys}) is an image path of the dataset (e.g. {paths}) or a suffix of one; "
            "keys must be image paths relative to the dataset's image folder (the paper's files: AFLW2000 "
            "root, BIWI hpdb/, AFLW flickr/)")
