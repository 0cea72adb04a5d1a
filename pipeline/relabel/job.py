"""Bounding-box relabeling: one box per manifest row, all in one box style (paper §4.2).

``relabel(manifest, config)`` returns the ``boxes.parquet`` table (DESIGN §7: the manifest's
rows in the same order + ``x1, y1, x2, y2, box_source, det_score, fallback``, with
``status``/``reason`` updated) and a summary dict (the DVC metric).

Sources (``relabel.source``):

- ``detector``: run a face detector (``relabel.detector``: ``yunet`` | ``mtcnn``) on every image.
- ``landmarks``: the landmark box of the manifest (``lm_*`` columns).
- ``table``: the face box given with the dataset (manifest ``face_*`` columns: a ``table``
  dataset's ``x1..y2``); a row without one is rejected ("no box in table") or falls back.
- ``file``: published JSON boxes (``relabel.box_files``: dataset name → JSON path, e.g. the
  paper's ``AFLW2000.json``, ``BIWI.json``, ``AFLW.json`` as published), matched by
  :func:`pipeline.manifest.boxfile.match_box_file`: the key is the image path relative to the
  dataset's image folder (a suffix of ``image_path`` at a folder boundary), ``faceid`` the face
  number after ``#`` in ``sample_id`` (an entry without it belongs to the image's only face).
  Entries that match no row are counted and named in the summary (``box_files``); a file that
  matches no row of its dataset at all is an error.

Choosing the labelled face when the detector finds several (in this order):

1. the row has a landmark box: the detection that overlaps most the *tight* landmark extent
   (recovered exactly from the enlarged ``lm_*`` box, :func:`pipeline.manifest.landmarks.tight_extent`),
   overlap = intersection / the smaller area, so a tight detector box and a loose one of the
   same face both score ≈ 1 (IoU with the enlarged landmark box tops out near 0.37 for a tight
   box); ties go to the higher IoU with the extent. Below ``min_overlap`` the row is rejected
   ("face does not match landmarks": faces were found, none is the labelled one — reported as
   ``mismatched``, apart from ``missed`` = "no face detected");
2. no landmark box but a face box given with the dataset (a table's ``x1..y2``): the same
   overlap rule against that box (``min_overlap``);
3. the row is a video frame (non-empty ``group``; frames are visited in ``image_path`` order
   within ``(dataset, group)``) and an earlier frame got a box: the detection whose centre is
   nearest that box's centre;
4. otherwise (e.g. an unlabelled image of ``format: images``): the highest
   ``score × (1 − d / half-diagonal)``, ``d`` the distance between the box centre and the image
   centre (the most confident face near the centre).

The summary counts, per dataset, which rule chose each detector box (``selected_by``) and how
many rows are unlabelled.

No usable box: the row becomes ``status = "rejected"`` with its reason, unless
``fallback: landmarks`` and it has a landmark box, then it keeps the landmark box with
``fallback = True`` (``box_source = "landmarks"``). Image errors (missing, unreadable, empty
image) never fall back: the image itself cannot be used. Every box is clipped to the image;
one with less than ``min_box_size`` pixels of width or height left is rejected
("box outside the image"). Rows already rejected in the manifest are kept as they are.

Expensive work (reading and detecting) runs over distinct images in chunks, in worker
processes (``workers``), and every finished chunk is appended atomically to a cache directory
``<cache_dir>/<hash of detector settings>/part-*.jsonl`` keyed by ``dataset/image_path`` and
the file's size and mtime. A second run (after an interruption, or with other selection
settings such as ``min_iou``/``fallback``) only reads and detects the images not in the cache.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.geometry import MIN_BOX_SIZE, clip_box
from pipeline.core.io import atomic_path
from pipeline.manifest.boxfile import BoxFileMatch, load_box_file, match_box_file, no_match_message
from pipeline.manifest.schema import BOX_COLUMNS, read_manifest, validate_manifest
from pipeline.manifest.schema import COLUMNS as MANIFEST_COLUMNS
from pipeline.relabel.cache import image_key, read_images
from pipeline.relabel.detect import box_iou, get_detector
from pipeline.relabel.select import (
    MISMATCH,
    MISS,
    RULES,
    face_id,
    row_given_box,
    row_landmark_box,
    rule_for,
    select_face,
    visit_order,
)

log = logging.getLogger(__name__)

SOURCES = ("detector", "landmarks", "file", "table")
FALLBACKS = ("none", "landmarks")
YAW_BUCKETS = ((0, 30), (30, 60), (60, 90), (90, 181))


@dataclass(frozen=True)
class RelabelConfig:
    """params.yaml section ``relabel``."""

    source: str = "detector"            # detector | landmarks | file | table
    detector: str = "yunet"             # yunet | mtcnn (source: detector)
    score_threshold: float = 0.5        # detections below this score are ignored
    detector_options: Mapping[str, Any] = field(default_factory=dict)  # extra backend kwargs
    fallback: str = "none"              # none | landmarks
    min_overlap: float = 0.5            # min overlap (∩ / smaller area) of the chosen detection with the tight landmark extent
    min_iou: float | None = None        # replaced by min_overlap (an error if set)
    min_box_size: float = MIN_BOX_SIZE  # px of width/height a clipped box must keep
    box_files: Mapping[str, str] = field(default_factory=dict)  # dataset -> JSON (source: file)
    workers: int = 0                    # processes; 0 = all cores, 1 = in this process
    chunk_size: int = 64                # images per task / per cache part

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"relabel.source must be one of {SOURCES}, got {self.source!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"relabel.fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"relabel.score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.min_iou is not None:
            raise ValueError("relabel.min_iou was replaced by relabel.min_overlap (intersection over the smaller "
                             "area of the detection and the tight landmark extent, default 0.5): rename the key")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ValueError(f"relabel.min_overlap must be in [0, 1], got {self.min_overlap}")
        if self.min_box_size < 0:
            raise ValueError(f"relabel.min_box_size must be >= 0, got {self.min_box_size}")
        if self.workers < 0:
            raise ValueError(f"relabel.workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.chunk_size < 1:
            raise ValueError(f"relabel.chunk_size must be >= 1, got {self.chunk_size}")
        if not isinstance(self.detector_options, Mapping) or not isinstance(self.box_files, Mapping):
            raise ValueError("relabel.detector_options and relabel.box_files must be mappings")
        if self.source == "file" and not self.box_files:
            raise ValueError("relabel.source is 'file' but relabel.box_files is empty: "
                             "map each dataset name to its JSON box file")


# --------------------------------------------------------------------------- main entry


def _category(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _stats(v: np.ndarray) -> dict[str, float | None]:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "median": None}
    return {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4)}


def relabel(manifest: pd.DataFrame, config: RelabelConfig = RelabelConfig(),
            cache_dir: str | os.PathLike | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Boxes for every manifest row (same rows, same order) and the summary dict."""
    validate_manifest(manifest)
    df = manifest.reset_index(drop=True).copy()
    n = len(df)
    todo = (df["status"].astype(str) == "ok").to_numpy()

    spec = detector = None
    if config.source == "detector":
        options = {"score_threshold": config.score_threshold, **dict(config.detector_options)}
        detector = get_detector(config.detector, **options)  # fails early if the backend is missing
        spec = (config.detector, options)
    file_match: dict[str, BoxFileMatch] = {}
    if config.source == "file":
        file_match = _match_box_files(df, todo, config.box_files)

    images: dict[str, str] = {}
    keys = [""] * n
    for pos in np.flatnonzero(todo):
        ds, rel, root = str(df.at[pos, "dataset"]), str(df.at[pos, "image_path"]), str(df.at[pos, "root"])
        keys[pos] = image_key(ds, rel)
        images.setdefault(keys[pos], str(Path(root) / rel))
    records, cache_counts = read_images(images, spec, detector, config.chunk_size, config.workers, cache_dir, progress)

    x = np.full((n, 4), np.nan, dtype=np.float64)
    source = np.full(n, "", dtype=object)
    score = np.full(n, np.nan)
    fallback = np.zeros(n, dtype=bool)
    iou_lm = np.full(n, np.nan)
    overlap = np.full(n, np.nan)
    cause = np.full(n, "", dtype=object)  # why the detector gave no box (MISS / MISMATCH), even if it fell back
    rule = np.full(n, "", dtype=object)  # which select_face rule chose the detection
    found = np.zeros(n, dtype=bool)
    status = df["status"].astype(str).to_numpy(dtype=object).copy()
    reason = df["reason"].fillna("").astype(str).to_numpy(dtype=object).copy()
    fell_back: Counter[str] = Counter()
    previous: dict[tuple[str, str], tuple] = {}
    det_name = f"detector:{config.detector}"

    rows = list(df[list(MANIFEST_COLUMNS)].itertuples(index=False))
    for pos in visit_order(df):
        if not todo[pos]:
            continue
        row = rows[pos]
        sid = str(row.sample_id)
        rec = records[keys[pos]]
        if rec.get("error"):
            status[pos], reason[pos] = "rejected", rec["error"]
            log.warning("relabel: sample %s: %s — fix or remove the file; the row is kept as rejected", sid, rec["error"])
            continue
        w, h = int(rec["w"]), int(rec["h"])
        lm = row_landmark_box(row)
        group = (str(row.dataset), str(row.group or ""))
        box, why = None, ""
        if config.source == "landmarks":
            box, why = (lm, "") if lm is not None else (None, "no landmark box")
            src = "landmarks"
        elif config.source == "table":
            box = row_given_box(row)
            why = "" if box is not None else "no box in table"
            src = "table"
        elif config.source == "file":
            hit = file_match[str(row.dataset)].by_row.get(pos)
            box = None if hit is None else hit.box
            why = "" if box is not None else f"no box in box file: {row.image_path} face {face_id(sid)}"
            src = "file"
        else:
            dets = np.asarray(rec["dets"], dtype=np.float64).reshape(-1, 5)
            clipped = [(clip_box(d[:4], w, h, config.min_box_size), d[4]) for d in dets]
            dets = np.array([[*b, s] for b, s in clipped if b is not None]).reshape(-1, 5)
            prev = previous.get(group) if group[1] else None
            given = row_given_box(row)
            i, ov, why = select_face(dets, w, h, lm, prev, config.min_overlap, given)
            src = det_name
            if i is not None:
                rule[pos] = rule_for(lm, given, prev)
                box, score[pos], overlap[pos] = tuple(dets[i, :4]), dets[i, 4], ov
                if rule[pos] != "landmarks":
                    overlap[pos] = np.nan  # the summary's overlap is with the landmark extent only
                if lm is not None:
                    iou_lm[pos] = float(box_iou(dets[i, :4], lm)[0, 0])
                found[pos] = True
            else:
                cause[pos] = _category(why)
        if box is not None:
            clipped_box = clip_box(box, w, h, config.min_box_size)
            if clipped_box is None:
                why = f"box outside the image: {tuple(round(v, 1) for v in box)} in {w}x{h}"
                score[pos], found[pos] = np.nan, False
            box = clipped_box
        if box is None and config.fallback == "landmarks" and src != "landmarks" and lm is not None:
            lm_clipped = clip_box(lm, w, h, config.min_box_size)
            if lm_clipped is not None:
                fell_back[_category(why)] += 1
                box, src, fallback[pos], score[pos] = lm_clipped, "landmarks", True, np.nan
        if box is None:
            status[pos], reason[pos] = "rejected", why
            log.debug("relabel: sample %s rejected: %s", sid, why)
            continue
        x[pos] = box
        source[pos] = src
        if group[1]:
            previous[group] = box

    out = df.copy()
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        out[c] = x[:, j].astype(np.float32)
    out["box_source"] = pd.Series(source, dtype=object).astype(str).to_numpy()
    out["det_score"] = score.astype(np.float32)
    out["fallback"] = fallback
    out["status"] = status.astype(str)
    out["reason"] = reason.astype(str)

    summary = _summary(out, todo, found, iou_lm, overlap, cause, rule, fell_back, config, cache_counts)
    if file_match:
        summary["box_files"] = {ds: m.summary() for ds, m in sorted(file_match.items())}
    return out, summary


def _match_box_files(df: pd.DataFrame, todo: np.ndarray, box_files: Mapping[str, str]) -> dict[str, BoxFileMatch]:
    """Each dataset with rows to box: its published file matched to its rows (all its rows, so
    "the image's only face" counts rejected faces too); keys are row positions of ``df``."""
    out: dict[str, BoxFileMatch] = {}
    datasets = df["dataset"].astype(str).to_numpy()
    for ds in sorted(set(datasets[todo])):
        if ds not in box_files:
            raise ValueError(f"relabel.box_files has no JSON for dataset {ds!r} (source: file); "
                             f"known: {sorted(box_files)}")
        where = f"box file {str(box_files[ds])!r}"
        entries = load_box_file(box_files[ds])
        pos = np.flatnonzero(datasets == ds)
        paths = df["image_path"].astype(str).to_numpy()[pos].tolist()
        faces = [face_id(s) for s in df["sample_id"].astype(str).to_numpy()[pos]]
        m = match_box_file(entries, paths, faces, where)
        if not m.by_row:
            raise ValueError(no_match_message(where, ds, entries, paths))
        m.by_row = {int(pos[k]): v for k, v in m.by_row.items()}
        if m.unmatched:
            log.warning("relabel: %d entr%s of %s match no row of dataset %r, e.g. %s", len(m.unmatched),
                        "y" if len(m.unmatched) == 1 else "ies", where, ds, m.unmatched[:3])
        out[ds] = m
    return out


def _summary(out: pd.DataFrame, todo: np.ndarray, found: np.ndarray, iou_lm: np.ndarray, overlap: np.ndarray,
             cause: np.ndarray, rule: np.ndarray, fell_back: Counter, config: RelabelConfig, cache_counts: dict) -> dict:
    ok = (out["status"] == "ok").to_numpy()
    new_rej = todo & ~ok
    # true misses (nothing detected) vs mismatches (faces found, none the labelled one), whether
    # the row was then rejected or fell back to its landmark box
    missed_rows = todo & (cause == MISS)
    mismatched_rows = todo & (cause == MISMATCH)

    labelled = out["labelled"].to_numpy(bool)

    def part(mask: np.ndarray) -> dict:
        n_todo = int((mask & todo).sum())
        chosen = mask & found & ok
        return {
            "rows": int(mask.sum()),
            "unlabelled": int((mask & ok & ~labelled).sum()),
            "processed": n_todo,
            "ok": int((mask & ok).sum()),
            "rejected": int((mask & new_rej).sum()),
            "fallback": int((mask & out["fallback"].to_numpy()).sum()),
            "detected": int((mask & found & ok).sum()),
            "detection_rate": round(float((mask & found & ok).sum()) / n_todo, 4) if n_todo else None,
            "missed": int((mask & missed_rows).sum()),
            "mismatched": int((mask & mismatched_rows).sum()),
            "mean_iou_landmarks": _stats(iou_lm[mask & found & ok])["mean"],
            "mean_overlap_landmarks": _stats(overlap[mask & found & ok])["mean"],
            "selected_by": {r: int((chosen & (rule == r)).sum()) for r in RULES if (chosen & (rule == r)).any()},
        }

    w = (out["x2"] - out["x1"]).to_numpy(np.float64)[ok]
    h = (out["y2"] - out["y1"]).to_numpy(np.float64)[ok]
    summary: dict[str, Any] = {
        "source": config.source,
        "detector": config.detector if config.source == "detector" else None,
        **part(np.ones(len(out), dtype=bool)),
        "rejected_in_manifest": int((~todo).sum()),
        "rejected_by_reason": dict(sorted(Counter(_category(r) for r in out["reason"].to_numpy()[new_rej]).items())),
        "fallback_by_reason": dict(sorted(fell_back.items())),
        "box": {
            "width": _stats(w), "height": _stats(h),
            "aspect_w_over_h": _stats(w / np.where(h > 0, h, np.nan)),
        },
        "per_dataset": {str(ds): part((out["dataset"] == ds).to_numpy()) for ds in sorted(out["dataset"].astype(str).unique())},
        "images": cache_counts,
    }
    ayaw = np.abs(out["yaw"].to_numpy(np.float64))
    by_yaw = {}
    for lo, hi in YAW_BUCKETS:
        m = todo & (ayaw >= lo) & (ayaw < hi)
        if m.any():
            by_yaw[f"{lo}-{hi if hi <= 90 else 'inf'}"] = {
                "rows": int(m.sum()), "detection_rate": round(float((m & found & ok).sum()) / int(m.sum()), 4)}
    summary["detection_rate_by_abs_yaw"] = by_yaw
    m = todo & (ayaw <= 60)
    summary["detection_rate_abs_yaw_le_60"] = round(float((m & found & ok).sum()) / int(m.sum()), 4) if m.any() else None
    return _nan_to_none(summary)


def format_summary(summary: dict) -> str:
    """A few human-readable lines for the console."""
    lines = [f"relabel ({summary['source']}{':' + summary['detector'] if summary.get('detector') else ''}): "
             f"{summary['ok']}/{summary['rows']} rows with a box, {summary['rejected']} rejected, "
             f"{summary['fallback']} fell back to landmarks, {summary['rejected_in_manifest']} already rejected"]
    for ds, p in summary["per_dataset"].items():
        if summary["source"] != "detector":
            lines.append(f"  {ds}: {p['ok']}/{p['rows']} ok")
            continue
        rate = "n/a" if p["detection_rate"] is None else f"{100 * p['detection_rate']:.1f}%"
        ov = "n/a" if p["mean_overlap_landmarks"] is None else f"{p['mean_overlap_landmarks']:.3f}"
        lines.append(f"  {ds}: {p['ok']}/{p['rows']} ok, detection rate {rate} ({p['missed']} missed, "
                     f"{p['mismatched']} mismatched), mean overlap with the landmark extent {ov}")
        if p["unlabelled"] or set(p["selected_by"]) - {"landmarks"}:
            chosen = ", ".join(f"{k} {v}" for k, v in p["selected_by"].items())
            lines.append(f"    {p['unlabelled']} unlabelled; face chosen by: {chosen or 'none'}")
    for ds, m in summary.get("box_files", {}).items():
        if m["unmatched"]:
            lines.append(f"  {ds}: {m['unmatched']} of {m['entries']} box-file entries match no manifest row, "
                         f"e.g. {', '.join(m['unmatched_examples'])}")
    if summary["rejected_by_reason"]:
        lines.append("  rejected: " + ", ".join(f"{k} ({v})" for k, v in summary["rejected_by_reason"].items()))
    if summary["fallback_by_reason"]:
        lines.append("  fell back: " + ", ".join(f"{k} ({v})" for k, v in summary["fallback_by_reason"].items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def read_manifest_table(path: str | os.PathLike) -> pd.DataFrame:
    return read_manifest(path)


def write_boxes(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``boxes.parquet`` atomically (validates the columns)."""
    validate_manifest(df, "boxes table")
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"boxes table lacks column(s) {missing}")
    with atomic_path(path, ".parquet") as tmp:
        df.to_parquet(tmp, index=False)
