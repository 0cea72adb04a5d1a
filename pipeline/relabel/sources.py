"""Where a row's box comes from: one function per ``relabel.source`` (:data:`BOX_SOURCES`).

Each takes one manifest row as :class:`RowInput` (its image size, the detections on its image,
its landmark box, the box its video group's previous frame got) and the :class:`SourceContext`
shared by the run, and returns a :class:`~pipeline.relabel.records.BoxChoice`; clipping to the
image and the landmark fallback are applied afterwards, once, by :mod:`pipeline.relabel.job`.
The detector itself runs before, over every distinct image (:func:`pipeline.relabel.cache.read_images`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.geometry import clip_box
from pipeline.manifest.boxfile import BoxFileMatch, load_box_file, match_box_file, no_match_message
from pipeline.relabel.detect import box_iou
from pipeline.relabel.records import Box, BoxChoice, reason_category
from pipeline.relabel.select import face_id, row_given_box, rule_for, select_face

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowInput:
    """One manifest row as a box source sees it."""

    pos: int                   # the row's position in the manifest (the keys of a BoxFileMatch)
    row: Any                   # the manifest row (a namedtuple of the manifest columns)
    w: int                     # image size in pixels
    h: int
    dets: np.ndarray           # detections [N, 5] (x1, y1, x2, y2, score) on its image; empty unless detecting
    landmark_box: Box | None
    previous: Box | None       # the box the previous frame of its video group got, if any


@dataclass(frozen=True)
class SourceContext:
    """What the box sources share in one run."""

    min_overlap: float                 # relabel.min_overlap (detector)
    min_box_size: float                # relabel.min_box_size: detections clipped to the image keep this much
    detector: str = ""                 # box_source of a detector box: "detector:<name>"
    box_files: Mapping[str, BoxFileMatch] = field(default_factory=dict)  # dataset -> its matched box file (file)


ChooseBox = Callable[[RowInput, SourceContext], BoxChoice]


def from_landmarks(item: RowInput, ctx: SourceContext) -> BoxChoice:
    """``landmarks``: the landmark box of the manifest (``lm_*``)."""
    box = item.landmark_box
    return BoxChoice(box, "landmarks", "" if box is not None else "no landmark box")


def from_table(item: RowInput, ctx: SourceContext) -> BoxChoice:
    """``table``: the face box given with the dataset (manifest ``face_*``)."""
    box = row_given_box(item.row)
    return BoxChoice(box, "table", "" if box is not None else "no box in table")


def from_file(item: RowInput, ctx: SourceContext) -> BoxChoice:
    """``file``: the published box matched to the row (:func:`match_box_files`)."""
    hit = ctx.box_files[str(item.row.dataset)].by_row.get(item.pos)
    box = None if hit is None else hit.box
    why = "" if box is not None else f"no box in box file: {item.row.image_path} face {face_id(str(item.row.sample_id))}"
    return BoxChoice(box, "file", why)


def from_detector(item: RowInput, ctx: SourceContext) -> BoxChoice:
    """``detector``: the detection :func:`~pipeline.relabel.select.select_face` picks among those
    left after clipping them to the image."""
    w, h = item.w, item.h
    clipped = [(clip_box(d[:4], w, h, ctx.min_box_size), d[4]) for d in item.dets]
    dets = np.array([[*b, s] for b, s in clipped if b is not None]).reshape(-1, 5)
    lm, given = item.landmark_box, row_given_box(item.row)
    i, ov, why = select_face(dets, w, h, lm, item.previous, ctx.min_overlap, given)
    if i is None:
        return BoxChoice(None, ctx.detector, why, cause=reason_category(why))
    rule = rule_for(lm, given, item.previous)
    return BoxChoice(
        tuple(dets[i, :4]), ctx.detector, score=float(dets[i, 4]), selected_by=rule,
        overlap=ov if rule == "landmarks" else math.nan,  # the summary's overlap is with the landmark extent only
        iou_landmarks=math.nan if lm is None else float(box_iou(dets[i, :4], lm)[0, 0]))


# relabel.source -> its box function (the keys are the valid values of relabel.source)
BOX_SOURCES: dict[str, ChooseBox] = {
    "detector": from_detector,
    "landmarks": from_landmarks,
    "file": from_file,
    "table": from_table,
}


def match_box_files(df: pd.DataFrame, todo: np.ndarray, box_files: Mapping[str, str]) -> dict[str, BoxFileMatch]:
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
