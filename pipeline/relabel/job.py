"""Bounding-box relabeling: one box per manifest row, all in one box style (paper §4.2).

``relabel(manifest, config)`` returns the ``boxes.parquet`` table (DESIGN §7: the manifest's
rows in the same order + ``x1, y1, x2, y2, box_source, det_score, fallback``, with
``status``/``reason`` updated) and a summary dict (the DVC metric).

Sources (``relabel.source``):

- ``detector``: run a face detector (``relabel.detector``: ``yunet`` | ``mtcnn``) on every image.
- ``landmarks``: the landmark box of the manifest (``lm_*`` columns).
- ``file``: published JSON boxes (``relabel.box_files``: dataset name → JSON path), matched by
  the row's ``image_path`` and the face id after ``#`` in its ``sample_id``.

Choosing the labelled face when the detector finds several (in this order):

1. the row has a landmark box: the detection with the largest IoU with it; if that IoU is below
   ``min_iou`` the detection is rejected ("face does not match landmark box") — a detector box
   that hardly overlaps the labelled face belongs to another face or is a false positive;
2. the row is a video frame (non-empty ``group``; frames are visited in ``image_path`` order
   within ``(dataset, group)``) and an earlier frame got a box: the detection whose centre is
   nearest that box's centre;
3. otherwise: the highest ``score × (1 − d / half-diagonal)``, ``d`` the distance between the
   box centre and the image centre (the most confident face near the centre).

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

from pipeline.core.geometry import clip_box
from pipeline.core.io import atomic_path
from pipeline.manifest.schema import BOX_COLUMNS, read_manifest, validate_manifest
from pipeline.manifest.schema import COLUMNS as MANIFEST_COLUMNS
from pipeline.relabel.cache import image_key, read_images
from pipeline.relabel.detect import get_detector
from pipeline.relabel.select import face_id, file_box, load_box_file, row_landmark_box, select_face, visit_order

log = logging.getLogger(__name__)

SOURCES = ("detector", "landmarks", "file")
FALLBACKS = ("none", "landmarks")
YAW_BUCKETS = ((0, 30), (30, 60), (60, 90), (90, 181))


@dataclass(frozen=True)
class RelabelConfig:
    """params.yaml section ``relabel``."""

    source: str = "detector"            # detector | landmarks | file
    detector: str = "yunet"             # yunet | mtcnn (source: detector)
    score_threshold: float = 0.5        # detections below this score are ignored
    detector_options: Mapping[str, Any] = field(default_factory=dict)  # extra backend kwargs
    fallback: str = "none"              # none | landmarks
    min_iou: float = 0.3                # min IoU of the chosen detection with the landmark box
    min_box_size: float = 4.0           # px of width/height a clipped box must keep
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
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"relabel.min_iou must be in [0, 1], got {self.min_iou}")
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
    file_boxes: dict[str, dict] = {}
    if config.source == "file":
        for ds in sorted(set(df.loc[todo, "dataset"].astype(str))):
            if ds not in config.box_files:
                raise ValueError(f"relabel.box_files has no JSON for dataset {ds!r} (source: file); "
                                 f"known: {sorted(config.box_files)}")
            file_boxes[ds] = load_box_file(config.box_files[ds])

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
        elif config.source == "file":
            box = file_box(file_boxes[str(row.dataset)], str(row.image_path), face_id(sid))
            why = "" if box is not None else f"no box in box file: {row.image_path} face {face_id(sid)}"
            src = "file"
        else:
            dets = np.asarray(rec["dets"], dtype=np.float64).reshape(-1, 5)
            clipped = [(clip_box(d[:4], w, h, config.min_box_size), d[4]) for d in dets]
            dets = np.array([[*b, s] for b, s in clipped if b is not None]).reshape(-1, 5)
            prev = previous.get(group) if group[1] else None
            i, iou, why = select_face(dets, w, h, lm, prev, config.min_iou)
            src = det_name
            if i is not None:
                box, score[pos], iou_lm[pos] = tuple(dets[i, :4]), dets[i, 4], iou
                found[pos] = True
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

    summary = _summary(out, todo, found, iou_lm, fell_back, config, cache_counts)
    return out, summary


def _summary(out: pd.DataFrame, todo: np.ndarray, found: np.ndarray, iou_lm: np.ndarray,
             fell_back: Counter, config: RelabelConfig, cache_counts: dict) -> dict:
    ok = (out["status"] == "ok").to_numpy()
    new_rej = todo & ~ok

    def part(mask: np.ndarray) -> dict:
        n_todo = int((mask & todo).sum())
        return {
            "rows": int(mask.sum()),
            "processed": n_todo,
            "ok": int((mask & ok).sum()),
            "rejected": int((mask & new_rej).sum()),
            "fallback": int((mask & out["fallback"].to_numpy()).sum()),
            "detected": int((mask & found & ok).sum()),
            "detection_rate": round(float((mask & found & ok).sum()) / n_todo, 4) if n_todo else None,
            "mean_iou_landmarks": _stats(iou_lm[mask & found & ok])["mean"],
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
        rate = "n/a" if p["detection_rate"] is None else f"{100 * p['detection_rate']:.1f}%"
        iou = "n/a" if p["mean_iou_landmarks"] is None else f"{p['mean_iou_landmarks']:.3f}"
        lines.append(f"  {ds}: {p['ok']}/{p['rows']} ok, detection rate {rate}, mean IoU with landmark box {iou}")
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
