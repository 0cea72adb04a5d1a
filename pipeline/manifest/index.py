"""Building the manifest: every configured dataset through its format reader, angle-range and
image checks, the summary counts (DVC metric) and the atomic write (`hpekd index`)."""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.angles import THETA
from pipeline.core.io import write_json
from pipeline.manifest.boxfile import face_number, load_box_file, match_box_file, no_match_message
from pipeline.manifest.rows import image_file
from pipeline.manifest.schema import SPLITS, STATUSES, to_frame, validate_manifest, write_manifest
from pipeline.manifest.spec import FORMATS, DatasetSpec, IndexConfig, ReadContext, reject

__all__ = ["DatasetSpec", "IndexConfig", "build_manifest", "check_image", "format_summary", "index_datasets", "summarize"]

log = logging.getLogger(__name__)


READERS = {
    "300w_lp": "pipeline.manifest.w300lp:read_300w_lp",
    "aflw2000": "pipeline.manifest.w300lp:read_aflw2000",
    "biwi": "pipeline.manifest.biwi:read_biwi",
    "biwi_npz": "pipeline.manifest.biwi:read_biwi_npz",
    "aflw": "pipeline.manifest.aflw:read_aflw",
    "table": "pipeline.manifest.table:read_table",
    "images": "pipeline.manifest.table:read_images",
}
assert set(READERS) == set(FORMATS)


# --------------------------------------------------------------------------- schema


# --------------------------------------------------------------------------- images

def check_image(path: Path, decode: bool) -> str | None:
    """``None`` if the image is usable, else a short reason. ``decode``: a reduced (1/8) decode,
    which for JPEG skips most of the work but still reads the whole compressed stream."""
    try:
        size = path.stat().st_size
    except OSError:
        return "image not found"
    if size == 0:
        return "empty image file"
    if decode:
        img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if img is None or img.size == 0:
            return "unreadable image"
    return None


def _check_images(df_rows: list[dict], config: IndexConfig, ctx: ReadContext, progress: bool) -> None:
    todo = [r for r in df_rows if r["status"] == "ok"]
    paths = [image_file(r["root"], r["image_path"]) for r in todo]
    # several faces of one image share one check
    unique = list(dict.fromkeys(paths))
    with cf.ThreadPoolExecutor(max_workers=config.workers) as pool:
        results = dict(zip(unique, tqdm(pool.map(lambda p: check_image(p, config.check_images), unique),
                                        total=len(unique), desc="check images", unit="img", disable=not progress)))
    for row, path in zip(todo, paths):
        why = results[path]
        if why is not None:
            expected = "a JPEG/PNG image readable by OpenCV" if why == "unreadable image" else "a non-empty image file"
            ctx.problem(row, why, f"image {str(path)!r}: {why} (expected {expected})")


# --------------------------------------------------------------------------- split files

def apply_split_file(rows: list[dict], spec: DatasetSpec) -> None:
    """``split: from_file``: each row's split is its entry's ``type`` in ``spec.split_file``;
    rows of images not in the file are rejected ("not in split file <name>", split "train")."""
    where = f"dataset {spec.name!r}: split file {spec.split_file!r}"
    entries = load_box_file(spec.split_file)  # type: ignore[arg-type]
    untyped = [rel for rel, faces in entries.items() if any(f.type is None for f in faces)]
    if untyped:
        raise ValueError(f"{where}: entry {untyped[0]!r} has no 'type' (train|test), so it gives no split "
                         f"({len(untyped)} such entries); use a file with types or another split")
    paths = [str(r["image_path"]) for r in rows]
    match = match_box_file(entries, paths, [face_number(r["sample_id"]) for r in rows], where)
    if not match.by_row:
        raise ValueError(no_match_message(f"{where}:", spec.name, entries, paths))
    name = Path(str(spec.split_file)).name
    for pos, row in enumerate(rows):
        hit = match.by_row.get(pos)
        if hit is not None:
            row["split"] = hit.type
        else:
            row["split"] = "train"
            if row["status"] == "ok":
                reject(row, f"not in split file {name}")
    if match.unmatched:
        log.warning("%s: %d entr%s of %s match no row, e.g. %s", spec.name, len(match.unmatched),
                    "y" if len(match.unmatched) == 1 else "ies", name, match.unmatched[:3])


# --------------------------------------------------------------------------- build

def _reader(fmt: str):
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; known formats: {list(FORMATS)}")
    module, func = READERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def build_manifest(config: IndexConfig, extract_root: str | os.PathLike[str] | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Read every dataset of ``config`` into one manifest DataFrame (rows in config order).

    ``extract_root``: where ``biwi_npz`` images are extracted (``<extract_root>/<name>/``);
    :func:`index_datasets` uses ``<manifest dir>/extracted``.
    """
    ctx = ReadContext(on_error=config.on_error, extract_root=Path(extract_root) if extract_root else None,
                      workers=config.workers, progress=progress)
    rows: list[dict] = []
    for spec in config.datasets:
        got = _reader(spec.format)(spec, ctx)
        if spec.split == "from_file":
            apply_split_file(got, spec)
        log.info("%s (%s): %d rows from %s", spec.name, spec.format, len(got), spec.root)
        for row in got:
            if row["status"] != "ok" or not row["labelled"]:
                continue
            angles = (row["pitch"], row["yaw"], row["roll"])
            if not all(math.isfinite(a) for a in angles):
                reject(row, "non-finite angle")
            elif not all(-THETA <= float(np.float32(a)) <= THETA for a in angles):
                reject(row, "angle out of range")
        rows.extend(got)
    _check_images(rows, config, ctx, progress)
    df = to_frame(rows)
    for spec in config.datasets:
        part = df[df["dataset"] == spec.name]
        if len(part) and (part["status"] == "rejected").all():
            reasons = dict(Counter(part["reason"]).most_common(3))
            raise ValueError(f"dataset {spec.name!r} ({spec.root}): all {len(part)} rows were rejected ({reasons})")
    validate_manifest(df, "built manifest")
    return df


def summarize(df: pd.DataFrame) -> dict[str, Any]:
    """Counts for the DVC metric: totals, labelled / unlabelled usable rows, per dataset/split/status,
    rejection reasons."""
    ok = df["status"] == "ok"
    out: dict[str, Any] = {
        "rows": int(len(df)),
        "ok": int(ok.sum()),
        "rejected": int((df["status"] == "rejected").sum()),
        "labelled": int((ok & df["labelled"]).sum()),
        "unlabelled": int((ok & ~df["labelled"]).sum()),
        "datasets": {},
    }
    for name, part in df.groupby("dataset", sort=False):
        part_ok = part["status"] == "ok"
        d: dict[str, Any] = {"rows": int(len(part)), "labelled": int((part_ok & part["labelled"]).sum()),
                             "unlabelled": int((part_ok & ~part["labelled"]).sum())}
        for split in SPLITS:
            s = part[part["split"] == split]
            if len(s):
                d[split] = {st: int((s["status"] == st).sum()) for st in STATUSES}
        rej = part[part["status"] == "rejected"]
        d["rejected_by_reason"] = {str(k): int(v) for k, v in Counter(rej["reason"]).most_common()}
        out["datasets"][str(name)] = d
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"manifest: {summary['rows']} rows, {summary['ok']} ok ({summary['labelled']} labelled, "
             f"{summary['unlabelled']} unlabelled), {summary['rejected']} rejected"]
    for name, d in summary["datasets"].items():
        parts = [f"{split}: {d[split]['ok']} ok / {d[split]['rejected']} rejected" for split in SPLITS if split in d]
        if d["unlabelled"]:
            parts.append(f"{d['unlabelled']} unlabelled")
        lines.append(f"  {name}: " + "; ".join(parts))
        for reason, n in d["rejected_by_reason"].items():
            lines.append(f"    rejected {n}: {reason}")
    return "\n".join(lines)


def index_datasets(config: IndexConfig, out: str | os.PathLike[str], summary_path: str | os.PathLike[str] | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Build the manifest, write it atomically to ``out`` (and the summary JSON); returns the summary.

    Nothing is written when a dataset raises (missing folder, broken file with
    ``on_error: raise``, …); ``biwi_npz`` images are extracted to ``<out dir>/extracted/<name>/``.
    """
    out = Path(out)
    df = build_manifest(config, extract_root=out.parent / "extracted", progress=progress)
    summary = summarize(df)
    write_manifest(df, out)
    if summary_path is not None:
        write_json(summary_path, summary)
    return summary
