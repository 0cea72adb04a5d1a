"""Results of the predictor as plain dict rows, and writing/reading them (JSON Lines or CSV).

Results are plain dict rows (see :data:`ROW_FIELDS`); a file or frame that cannot be used
(unreadable image or video, no face found) gives one row with ``error`` set and the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pipeline.core.io import atomic_path
from pipeline.inference.inputs import InputItem

ROW_FIELDS = ("file", "frame", "face", "x1", "y1", "x2", "y2", "det_score", "pitch", "yaw", "roll", "error")
NO_FACE = "no face found"
FORMATS = ("jsonl", "csv")


@dataclass
class FrameEntry:
    """One image or video frame on its way through the predictor: its faces, then their angles."""

    item: InputItem
    frame: int | None
    image: np.ndarray | None = None  # kept only when drawing
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    error: str | None = None
    angles: np.ndarray | None = None
    fps: float = 0.0  # videos: frames per second of the source (for the drawn mp4)


def _num(v: float, nd: int) -> float | None:
    v = float(v)
    return None if not math.isfinite(v) else round(v, nd)


def entry_rows(entry: FrameEntry) -> Iterator[dict[str, Any]]:
    """One row per face of ``entry`` (numbers rounded, non-finite → None), or one error row."""
    base = {k: None for k in ROW_FIELDS}
    base["file"] = entry.item.name
    base["frame"] = entry.frame
    if entry.error is not None and not entry.boxes:
        yield {**base, "error": entry.error}
        return
    assert entry.angles is not None
    for k, (box, score, ang) in enumerate(zip(entry.boxes, entry.scores, entry.angles)):
        yield {
            **base, "face": k,
            "x1": _num(box[0], 2), "y1": _num(box[1], 2), "x2": _num(box[2], 2), "y2": _num(box[3], 2),
            "det_score": _num(score, 4),
            "pitch": _num(ang[0], 3), "yaw": _num(ang[1], 3), "roll": _num(ang[2], 3),
        }


def output_format(out: str | os.PathLike[str] | None, fmt: str | None = None) -> str:
    """``fmt`` if given, else from ``out``'s extension (.jsonl/.ndjson/.json → jsonl, .csv → csv);
    stdout (``out`` None or ``-``) defaults to jsonl."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} must be one of {FORMATS}")
        return fmt
    if out is None or str(out) == "-":
        return "jsonl"
    ext = Path(out).suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the output format from {str(out)!r}: use a .jsonl or .csv name, or --format")


@dataclass
class WriteSummary:
    files: int = 0
    faces: int = 0
    errors: int = 0
    failed_files: int = 0  # files (images/videos) with no face predicted at all
    rows: int = 0


def write_rows(
    rows: Iterable[dict[str, Any]], out: str | os.PathLike[str] | TextIO | None, fmt: str | None = None
) -> WriteSummary:
    """Write rows as JSON Lines or CSV to a path (atomically), a text stream, or stdout."""
    if out is None or (not hasattr(out, "write") and str(out) == "-"):
        return _write_stream(rows, sys.stdout, output_format(None, fmt))
    if hasattr(out, "write"):
        return _write_stream(rows, out, fmt or "jsonl")  # type: ignore[arg-type]
    kind = output_format(out, fmt)  # type: ignore[arg-type]
    with atomic_path(out, Path(out).suffix) as tmp:  # type: ignore[arg-type]
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            summary = _write_stream(rows, f, kind)
    return summary


def _write_stream(rows: Iterable[dict[str, Any]], f: TextIO, kind: str) -> WriteSummary:
    s = WriteSummary()
    ok_files: dict[str, bool] = {}
    writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore") if kind == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        s.rows += 1
        ok_files.setdefault(row["file"], False)
        if row.get("error"):
            s.errors += 1
        else:
            s.faces += 1
            ok_files[row["file"]] = True
        if writer is not None:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in ROW_FIELDS})
        else:
            f.write(json.dumps(row, allow_nan=False) + "\n")
    s.files = len(ok_files)
    s.failed_files = sum(not v for v in ok_files.values())
    return s


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read back a predictions file (JSON Lines or CSV; CSV values parsed to numbers/None)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if output_format(p) == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        parsed: dict[str, Any] = {}
        for k in ROW_FIELDS:
            v = row.get(k, "")
            if v == "":
                parsed[k] = None
            elif k in ("frame", "face"):
                parsed[k] = int(v)
            elif k in ("file", "error"):
                parsed[k] = v
            else:
                parsed[k] = float(v)
        out.append(parsed)
    return out
