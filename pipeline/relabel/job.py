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

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import multiprocessing
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.relabel.detect import Detector, backend_version, box_iou, get_detector
from pipeline.manifest.boxfile import load_box_file as _load_box_file
from pipeline.manifest.index import BOX_COLUMNS, read_boxes, read_manifest, validate_manifest  # noqa: F401 (re-exported)
from pipeline.manifest.index import COLUMNS as MANIFEST_COLUMNS
from pipeline.core.geometry import clip_box
from pipeline.core.io import atomic_path

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


# --------------------------------------------------------------------------- reading images


def _image_key(dataset: str, image_path: str) -> str:
    return f"{dataset}/{image_path}"


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


_WORKER_DETECTOR: dict[str, Detector] = {}


def _init_worker() -> None:
    # one thread per process: the pool provides the parallelism
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _process_chunk(items: Sequence[tuple[str, str]], spec: tuple[str, dict] | None,
                   detector: Detector | None = None) -> list[dict]:
    """Read (and detect on) each image ``(key, path)``; one JSON-able record per image."""
    from pipeline.core.images import read_image

    if spec is not None and detector is None:
        tag = json.dumps(spec, sort_keys=True)
        if tag not in _WORKER_DETECTOR:
            _WORKER_DETECTOR[tag] = get_detector(spec[0], **spec[1])
        detector = _WORKER_DETECTOR[tag]
    out = []
    for key, path in items:
        size, mtime = _stat(path)
        rec: dict[str, Any] = {"key": key, "size": size, "mtime_ns": mtime, "h": 0, "w": 0, "dets": [], "error": ""}
        try:
            img = read_image(path)
        except FileNotFoundError:
            rec["error"] = f"image not found: {path}"
        except ValueError as exc:
            rec["error"] = f"unreadable image: {exc}"
        else:
            rec["h"], rec["w"] = int(img.shape[0]), int(img.shape[1])
            if detector is not None:
                try:
                    rec["dets"] = [[*map(float, d.box), float(d.score)] for d in detector.detect(img)]
                except Exception as exc:  # noqa: BLE001 - one bad image must not end the run
                    rec["error"] = f"detector failed: {type(exc).__name__}: {exc}"
                    rec["transient"] = True
        out.append(rec)
    return out


class _Cache:
    """Append-only per-chunk JSONL parts under ``root/<tag>``; later parts win."""

    def __init__(self, root: Path | None, tag: str, meta: dict) -> None:
        self.dir = None if root is None else Path(root) / tag
        self.records: dict[str, dict] = {}
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "settings.json"
        if not meta_path.exists():
            with atomic_path(meta_path) as tmp:
                tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for part in sorted(self.dir.glob("part-*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
            for line in part.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.records[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("relabel cache: skipping a bad line in %s", part)

    def lookup(self, key: str, path: str) -> dict | None:
        rec = self.records.get(key)
        if rec is None:
            return None
        return rec if (rec.get("size"), rec.get("mtime_ns")) == _stat(path) else None

    def add(self, records: list[dict]) -> None:
        keep = [r for r in records if not r.get("transient")]
        for r in records:
            self.records[r["key"]] = r
        if self.dir is None or not keep:
            return
        with atomic_path(self.dir / f"part-{uuid.uuid4().hex}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


def _read_images(images: dict[str, str], spec: tuple[str, dict] | None, detector: Detector | None,
                 config: RelabelConfig, cache_dir: str | os.PathLike | None, progress: bool) -> tuple[dict, dict]:
    """Records for every image key (from the cache or computed); returns (records, counts)."""
    meta = {"mode": "detect" if spec else "read", "detector": spec[0] if spec else None,
            "options": spec[1] if spec else None, "version": backend_version(spec[0]) if spec else ""}
    tag = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    cache = _Cache(None if cache_dir is None else Path(cache_dir), tag, meta)
    records: dict[str, dict] = {}
    todo = []
    for key, path in images.items():
        rec = cache.lookup(key, path)
        if rec is None:
            todo.append((key, path))
        else:
            records[key] = rec
    counts = {"images": len(images), "from_cache": len(records), "computed": len(todo)}
    if todo:
        chunks = [todo[i:i + config.chunk_size] for i in range(0, len(todo), config.chunk_size)]
        workers = config.workers or os.cpu_count() or 1
        workers = min(workers, len(chunks))
        what = f"detect ({spec[0]})" if spec else "read images"
        log.info("relabel: %d images (%d from cache), %d to %s with %d process(es)",
                 len(images), counts["from_cache"], len(todo), what, workers)
        bar = tqdm(total=len(todo), desc=f"relabel: {what}", unit="img", disable=not progress)
        try:
            if workers <= 1:
                for chunk in chunks:
                    recs = _process_chunk(chunk, spec, detector)
                    cache.add(recs)
                    records.update((r["key"], r) for r in recs)
                    bar.update(len(chunk))
            else:
                ctx = multiprocessing.get_context("spawn")  # fork after OpenMP use can deadlock
                with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                    futures = {pool.submit(_process_chunk, chunk, spec): len(chunk) for chunk in chunks}
                    try:
                        for fut in cf.as_completed(futures):
                            recs = fut.result()
                            cache.add(recs)
                            records.update((r["key"], r) for r in recs)
                            bar.update(futures[fut])
                    except BaseException:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
        finally:
            bar.close()
    return records, counts


# --------------------------------------------------------------------------- box files


def _norm_relpath(p: str) -> str:
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def load_box_file(path: str | os.PathLike) -> dict[tuple[str, int], tuple[float, float, float, float]]:
    """Published box JSON as ``{(relpath, faceid): (x1, y1, x2, y2)}`` (validated by
    :func:`pipeline.manifest.boxfile.load_box_file`)."""
    return {(_norm_relpath(rel), int(fid)): tuple(map(float, fb.box)) for (rel, fid), fb in _load_box_file(path).items()}


def _file_box(boxes: dict, image_path: str, face: int) -> tuple[float, float, float, float] | None:
    rel = _norm_relpath(image_path)
    for k in (rel, os.path.splitext(rel)[0]):
        if (k, face) in boxes:
            return boxes[(k, face)]
    return None


# --------------------------------------------------------------------------- selection


def _center(b: Sequence[float]) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0])


def select_face(dets: np.ndarray, w: int, h: int, landmark_box: Sequence[float] | None = None,
                previous_box: Sequence[float] | None = None, min_iou: float = 0.3) -> tuple[int | None, float, str]:
    """Pick the labelled face among detections ``dets`` [N, 5] (x1, y1, x2, y2, score).

    Returns ``(index or None, IoU with the landmark box or NaN, reason if None)``; the rule is
    the one in the module docstring.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if len(dets) == 0:
        return None, math.nan, "no face detected"
    if landmark_box is not None:
        ious = box_iou(dets[:, :4], landmark_box)[:, 0]
        i = int(np.argmax(ious))
        if ious[i] < min_iou:
            return None, float(ious[i]), (f"face does not match landmark box: best IoU {ious[i]:.2f} "
                                          f"< min_iou {min_iou:g} ({len(dets)} face(s) found)")
        return i, float(ious[i]), ""
    centres = (dets[:, 0:2] + dets[:, 2:4]) / 2.0
    if previous_box is not None:
        d = np.linalg.norm(centres - _center(previous_box), axis=1)
        return int(np.argmin(d)), math.nan, ""
    half_diag = max(math.hypot(w, h) / 2.0, 1e-6)
    d = np.linalg.norm(centres - np.array([w / 2.0, h / 2.0]), axis=1)
    rank = dets[:, 4] * (1.0 - np.clip(d / half_diag, 0.0, 1.0))
    return int(np.argmax(rank)), math.nan, ""


def _landmark_box(row: Any) -> tuple[float, float, float, float] | None:
    b = (row.lm_x1, row.lm_y1, row.lm_x2, row.lm_y2)
    if not all(np.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
        return None
    return tuple(float(v) for v in b)


def _face_id(sample_id: str) -> int:
    tail = str(sample_id).rpartition("#")[2]
    try:
        return int(tail)
    except ValueError:
        return 0


def _visit_order(df: pd.DataFrame) -> list[int]:
    """Row positions: manifest order, except that each video group (dataset, group) is visited
    in ``image_path`` order at the position of its first row."""
    order: list[int] = []
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pos, (ds, g) in enumerate(zip(df["dataset"].astype(str), df["group"].fillna("").astype(str))):
        if g:
            groups[(ds, g)].append(pos)
    done_groups = set()
    paths = df["image_path"].astype(str).to_numpy()
    for pos, (ds, g) in enumerate(zip(df["dataset"].astype(str), df["group"].fillna("").astype(str))):
        if not g:
            order.append(pos)
        elif (ds, g) not in done_groups:
            done_groups.add((ds, g))
            order.extend(sorted(groups[(ds, g)], key=lambda p: (paths[p], p)))
    return order


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
        keys[pos] = _image_key(ds, rel)
        images.setdefault(keys[pos], str(Path(root) / rel))
    records, cache_counts = _read_images(images, spec, detector, config, cache_dir, progress)

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
    for pos in _visit_order(df):
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
        lm = _landmark_box(row)
        group = (str(row.dataset), str(row.group or ""))
        box, why = None, ""
        if config.source == "landmarks":
            box, why = (lm, "") if lm is not None else (None, "no landmark box")
            src = "landmarks"
        elif config.source == "file":
            box = _file_box(file_boxes[str(row.dataset)], str(row.image_path), _face_id(sid))
            why = "" if box is not None else f"no box in box file: {row.image_path} face {_face_id(sid)}"
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
