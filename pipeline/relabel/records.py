"""The records relabeling passes around: what a box source chose for a row (:class:`BoxChoice`)
and what the row ends up with after clipping and fallback (:class:`RowBox`, one per row of
``boxes.parquet``; the summary is counted from them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


def reason_category(reason: str) -> str:
    """The part of a reason before its first ``:`` (what the summary counts)."""
    return reason.split(":", 1)[0].strip()


@dataclass(frozen=True)
class BoxChoice:
    """What a box source chose for one row, before clipping to the image and the fallback."""

    box: Box | None                    # None: no box, ``reason`` says why
    source: str                        # box_source of the box: landmarks | table | file | detector:<name>
    reason: str = ""                   # why there is no box
    score: float = math.nan            # the chosen detection's score (detector)
    selected_by: str = ""              # the select_face rule that chose the detection (one of RULES), detector only
    overlap: float = math.nan          # overlap with the tight landmark extent (selected_by "landmarks" only)
    iou_landmarks: float = math.nan    # IoU of the chosen detection with the landmark box (rows with one)
    cause: str = ""                    # MISS / MISMATCH: why the detector gave no box


@dataclass(frozen=True)
class RowBox:
    """One row of ``boxes.parquet``: its box (or none) and how it was found.

    ``detected`` is true when the box is the detector's choice; ``selected_by``, ``overlap`` and
    ``iou_landmarks`` are set only then. ``cause`` keeps why the detector gave no box, whether
    the row was then rejected or fell back; ``fallback_reason`` is the reason of a row that fell
    back to its landmark box."""

    status: str                        # the manifest's, or "rejected"
    reason: str                        # the manifest's, or why the row was rejected
    box: Box | None = None
    box_source: str = ""
    det_score: float = math.nan
    fallback: bool = False
    processed: bool = False            # status "ok" in the manifest: the row went through relabeling
    detected: bool = False
    selected_by: str = ""
    overlap: float = math.nan
    iou_landmarks: float = math.nan
    cause: str = ""
    fallback_reason: str = ""
