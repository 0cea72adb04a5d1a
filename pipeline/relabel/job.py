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
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.geometry import clip_box
from pipeline.core.io import atomic_path
from pipeline.manifest.boxfile import BoxFileMatch
from pipeline.manifest.schema import BOX_COLUMNS, read_manifest, validate_manifest
from pipeline.manifest.schema import COLUMNS as MANIFEST_COLUMNS
from pipeline.relabel.cache import image_key, read_images
from pipeline.relabel.config import RelabelConfig
from pipeline.relabel.detect import box_iou, get_detector
from pipeline.relabel.select import (
    face_id,
    row_given_box,
    row_landmark_box,
    rule_for,
    select_face,
    visit_order,
)
from pipeline.relabel.sources import match_box_files
from pipeline.relabel.summary import reason_category, summarize

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- main entry


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
        file_match = match_box_files(df, todo, config.box_files)

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
                cause[pos] = reason_category(why)
        if box is not None:
            clipped_box = clip_box(box, w, h, config.min_box_size)
            if clipped_box is None:
                why = f"box outside the image: {tuple(round(v, 1) for v in box)} in {w}x{h}"
                score[pos], found[pos] = np.nan, False
            box = clipped_box
        if box is None and config.fallback == "landmarks" and src != "landmarks" and lm is not None:
            lm_clipped = clip_box(lm, w, h, config.min_box_size)
            if lm_clipped is not None:
                fell_back[reason_category(why)] += 1
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

    summary = summarize(out, todo, found, iou_lm, overlap, cause, rule, fell_back, config, cache_counts)
    if file_match:
        summary["box_files"] = {ds: m.summary() for ds, m in sorted(file_match.items())}
    return out, summary


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
