"""Bounding-box relabeling: one box per manifest row, all in one box style (paper §4.2).

``relabel(manifest, config)`` returns the ``boxes.parquet`` table (docs/design.md §7: the manifest's
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

Each source is one function of :mod:`pipeline.relabel.sources` (``BOX_SOURCES``: source name →
function of one row and the run's context, returning a :class:`~pipeline.relabel.records.BoxChoice`);
this module applies clipping and the fallback below once, to every source's choice, and keeps
one :class:`~pipeline.relabel.records.RowBox` per row, from which :mod:`pipeline.relabel.summary`
counts the summary.

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

import numpy as np
import pandas as pd

from pipeline.core.geometry import clip_box
from pipeline.core.io import atomic_path
from pipeline.manifest.rows import image_file, ok_mask
from pipeline.manifest.schema import BOX_COLUMNS, read_manifest, validate_manifest
from pipeline.manifest.schema import COLUMNS as MANIFEST_COLUMNS
from pipeline.relabel.cache import image_key, read_images
from pipeline.relabel.config import RelabelConfig
from pipeline.relabel.detect import Detector, get_detector
from pipeline.relabel.records import Box, BoxChoice, RowBox
from pipeline.relabel.select import row_landmark_box, visit_order
from pipeline.relabel.sources import BOX_SOURCES, RowInput, SourceContext, match_box_files
from pipeline.relabel.summary import summarize

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- main entry


def relabel(manifest: pd.DataFrame, config: RelabelConfig,
            cache_dir: str | os.PathLike | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Boxes for every manifest row (same rows, same order) and the summary dict."""
    validate_manifest(manifest)
    df = manifest.reset_index(drop=True).copy()
    todo = ok_mask(df)
    sources = np.array([config.source_for(ds) for ds in df["dataset"].astype(str)], dtype=object)
    ctx = SourceContext(config.min_overlap, config.min_box_size, f"detector:{config.detector}",
                        match_box_files(df, todo & (sources == "file"), config.file_box_files()))
    keys, images, cache_counts = _read(df, todo, sources == "detector", config, cache_dir, progress)
    rows = _box_rows(df, [images[k] if ok else None for k, ok in zip(keys, todo)], config, ctx)
    out = _boxes_table(df, rows)
    summary = summarize(out, rows, config, cache_counts)
    if ctx.box_files:
        summary["box_files"] = {ds: m.summary() for ds, m in sorted(ctx.box_files.items())}
    return out, summary


def _read(df: pd.DataFrame, todo: np.ndarray, detect: np.ndarray, config: RelabelConfig,
          cache_dir: str | os.PathLike | None, progress: bool) -> tuple[list[str], dict[str, dict], dict]:
    """Every distinct image of the rows to box, read (size) and, for the rows whose source is
    the detector, run through it: (image key per row, record per key, cache counters)."""
    keys, paths = _image_keys(df, todo)
    images: dict[str, dict] = {}
    counts = {"images": 0, "from_cache": 0, "computed": 0}
    parts: list[tuple[np.ndarray, tuple[str, dict] | None, Detector | None]] = []
    if (todo & detect).any():  # the detector is built (and its backend required) only when used
        parts.append((todo & detect, *_detector(config)))
    parts.append((todo & ~detect, None, None))  # the other rows' images: their size only
    for part, spec, detector in parts:
        wanted = {keys[i]: paths[keys[i]] for i in np.flatnonzero(part)}
        if not wanted:
            continue
        got, c = read_images(wanted, spec, detector, config.chunk_size, config.workers, cache_dir, progress)
        images.update(got)
        counts = {k: counts[k] + c[k] for k in counts}
    return keys, images, counts


def _detector(config: RelabelConfig) -> tuple[tuple[str, dict] | None, Detector | None]:
    """``(spec, detector)`` for :func:`~pipeline.relabel.cache.read_images` (the spec is what
    worker processes build their detector from and what the cache is keyed by)."""
    options = {"score_threshold": config.score_threshold, **dict(config.detector_options)}
    detector = get_detector(config.detector, **options)  # fails early if the backend is missing
    return (config.detector, options), detector


def _image_keys(df: pd.DataFrame, todo: np.ndarray) -> tuple[list[str], dict[str, str]]:
    """The image key of each row to box ("" for the others) and the path of each distinct image."""
    paths: dict[str, str] = {}
    keys = [""] * len(df)
    for pos in np.flatnonzero(todo):
        ds, rel, root = str(df.at[pos, "dataset"]), str(df.at[pos, "image_path"]), str(df.at[pos, "root"])
        keys[pos] = image_key(ds, rel)
        paths.setdefault(keys[pos], str(image_file(root, rel)))
    return keys, paths


def _box_rows(df: pd.DataFrame, images: list[dict | None], config: RelabelConfig, ctx: SourceContext) -> list[RowBox]:
    """One record per row. Rows already rejected in the manifest (``images[pos]`` None) stay as
    they are; the others, in :func:`~pipeline.relabel.select.visit_order` (so a video frame
    sees the box its previous frame got), get their source's choice, clipped, with fallback."""
    reasons = df["reason"].fillna("").astype(str).tolist()
    out = [RowBox(status, reason) for status, reason in zip(df["status"].astype(str).tolist(), reasons)]
    rows = list(df[list(MANIFEST_COLUMNS)].itertuples(index=False))
    previous: dict[tuple[str, str], Box] = {}
    for pos in visit_order(df):
        image = images[pos]
        if image is None:
            continue
        row = rows[pos]
        if image.get("error"):
            log.warning("relabel: sample %s: %s — fix or remove the file; the row is kept as rejected",
                        str(row.sample_id), image["error"])
            out[pos] = RowBox("rejected", image["error"], processed=True)
            continue
        group = (str(row.dataset), str(row.group or ""))
        item = RowInput(pos, row, int(image["w"]), int(image["h"]),
                        np.asarray(image["dets"], dtype=np.float64).reshape(-1, 5),
                        row_landmark_box(row), previous.get(group) if group[1] else None)
        out[pos] = _settle(BOX_SOURCES[config.source_for(str(row.dataset))](item, ctx), item, config, reasons[pos])
        if out[pos].box is not None and group[1]:
            previous[group] = out[pos].box  # type: ignore[assignment]
    return out


def _settle(choice: BoxChoice, item: RowInput, config: RelabelConfig, reason: str) -> RowBox:
    """The row's record from its source's choice: the box clipped to the image (too little left:
    rejected, "box outside the image"); a row left without a box is rejected with the reason, or
    with ``fallback: landmarks`` keeps its clipped landmark box. ``reason``: the manifest's."""
    box, why = choice.box, choice.reason
    if box is not None:
        clipped = clip_box(box, item.w, item.h, config.min_box_size)
        if clipped is None:
            why = f"box outside the image: {tuple(round(v, 1) for v in box)} in {item.w}x{item.h}"
        box = clipped
    lm = item.landmark_box
    if box is None and config.fallback == "landmarks" and choice.source != "landmarks" and lm is not None:
        lm_clipped = clip_box(lm, item.w, item.h, config.min_box_size)
        if lm_clipped is not None:
            return RowBox("ok", reason, lm_clipped, "landmarks", fallback=True, processed=True,
                          cause=choice.cause, fallback_reason=why)
    if box is None:
        log.debug("relabel: sample %s rejected: %s", str(item.row.sample_id), why)
        return RowBox("rejected", why, processed=True, cause=choice.cause)
    return RowBox("ok", reason, box, choice.source, choice.score, processed=True,
                  detected=bool(choice.selected_by), selected_by=choice.selected_by, overlap=choice.overlap,
                  iou_landmarks=choice.iou_landmarks, cause=choice.cause)


def _boxes_table(df: pd.DataFrame, rows: list[RowBox]) -> pd.DataFrame:
    """``df`` with the box columns and the updated ``status``/``reason`` of ``rows``."""
    x = np.array([r.box if r.box is not None else (np.nan,) * 4 for r in rows], dtype=np.float64).reshape(-1, 4)
    out = df.copy()
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        out[c] = x[:, j].astype(np.float32)
    out["box_source"] = pd.Series(np.array([r.box_source for r in rows], dtype=object), dtype=object).astype(str).to_numpy()
    out["det_score"] = np.array([r.det_score for r in rows], dtype=np.float64).astype(np.float32)
    out["fallback"] = np.array([r.fallback for r in rows], dtype=bool)
    out["status"] = np.array([r.status for r in rows], dtype=object).astype(str)
    out["reason"] = np.array([r.reason for r in rows], dtype=object).astype(str)
    return out


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
