"""Checking every input of a teacher-label job before anything is written (docs/design.md §6).

A store is never rebuilt or extended on inputs that cannot be read: each image the job will
read must exist and decode (the reduced decode of ``hpekd index --check_images``), and each
box must be finite and overlap its image by at least one pixel (a box outside the image would
be labelled as a crop of zero padding). Problems are reported together, the first few named.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.manifest.index import check_image

log = logging.getLogger(__name__)

SHOW = 5  # problems named in the error message


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the image header, or None if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - PIL raises several types for broken files
        return None


def _check_one(path: str) -> tuple[str | None, tuple[int, int] | None]:
    why = check_image(Path(path), decode=True)
    if why is not None:
        return why, None
    size = image_size(path)
    return (None, size) if size is not None else ("unreadable image header", None)


def box_problem(box: np.ndarray, size: tuple[int, int]) -> str | None:
    """Why ``box`` (x1, y1, x2, y2) cannot be cropped from an image of ``size`` (w, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not np.isfinite([x1, y1, x2, y2]).all():
        return f"box {[x1, y1, x2, y2]} is not finite"
    if x2 - x1 < 1 or y2 - y1 < 1:
        return f"box {[round(v, 1) for v in (x1, y1, x2, y2)]} is smaller than 1 px"
    w, h = size
    if min(x2, w) - max(x1, 0.0) < 1 or min(y2, h) - max(y1, 0.0) < 1:
        return f"box {[round(v, 1) for v in (x1, y1, x2, y2)]} lies outside the {w}x{h} image"
    return None


def check_inputs(paths: Sequence[str], boxes: np.ndarray, sample_ids: Sequence[str], source: str,
                 workers: int | None = None) -> None:
    """Raise ``ValueError`` naming the first few rows whose image or box cannot be used."""
    unique = list(dict.fromkeys(paths))
    workers = workers or min(16, os.cpu_count() or 1)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:  # cv2/PIL release the GIL
        results = dict(zip(unique, pool.map(_check_one, unique)))
    problems = []
    for path, box, sid in zip(paths, boxes, sample_ids):
        why, size = results[path]
        if why is None and size is not None:
            why = box_problem(box, size)
        if why is not None:
            problems.append(f"{sid} ({path}: {why})")
    if problems:
        shown = "; ".join(problems[:SHOW]) + (f"; … {len(problems) - SHOW} more" if len(problems) > SHOW else "")
        raise ValueError(
            f"{source}: {len(problems)} row(s) with status ok cannot be labelled: {shown}. Fix the images or boxes "
            "(rerun `hpekd index` / `hpekd relabel`); nothing was written"
        )
    log.info("checked %d images and %d boxes", len(unique), len(paths))
