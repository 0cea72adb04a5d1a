"""The manifest (DESIGN §7): one row per face of every configured dataset.

Columns (:data:`COLUMNS`): ``sample_id`` (``<dataset>/<image_path>#<face>``, stable),
``dataset``, ``split`` (train|test), ``root`` (the dataset root as given in params; for
``biwi_npz`` the folder its images were extracted to), ``image_path`` (relative to ``root``),
``pitch, yaw, roll`` (float32 degrees, NaN if unknown), ``lm_x1, lm_y1, lm_x2, lm_y2`` (float32
landmark box, NaN if none; rule in :mod:`pipeline.manifest.landmarks`), ``group`` (BIWI
sequence, else ""), ``status`` (ok|rejected), ``reason`` ("" when ok).

Rows are never dropped: an angle outside [−99, 99] → ``rejected`` / "angle out of range"; a
broken file → an error naming it (``on_error: raise``) or a rejected row with its reason
(``on_error: reject``); see :mod:`pipeline.manifest.spec`.
"""

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
from pipeline.manifest.spec import FORMATS, DatasetSpec, IndexConfig, ReadContext, reject
from pipeline.core.io import atomic_path, write_json

__all__ = [
    "COLUMNS", "FLOAT_COLUMNS", "BOX_COLUMNS", "DatasetSpec", "IndexConfig", "validate_manifest",
    "read_manifest", "write_manifest", "read_boxes", "build_manifest", "summarize", "format_summary",
    "index_datasets", "check_image",
]

log = logging.getLogger(__name__)

COLUMNS = (
    "sample_id", "dataset", "split", "root", "image_path", "pitch", "yaw", "roll",
    "lm_x1", "lm_y1", "lm_x2", "lm_y2", "group", "status", "reason",
)
FLOAT_COLUMNS = ("pitch", "yaw", "roll", "lm_x1", "lm_y1", "lm_x2", "lm_y2")
STRING_COLUMNS = ("sample_id", "dataset", "split", "root", "image_path", "group", "status", "reason")
BOX_COLUMNS = ("x1", "y1", "x2", "y2", "box_source", "det_score", "fallback")
STATUSES = ("ok", "rejected")
SPLITS = ("train", "test")

READERS = {
    "300w_lp": "pipeline.manifest.w300lp:read_300w_lp",
    "aflw2000": "pipeline.manifest.w300lp:read_aflw2000",
    "biwi": "pipeline.manifest.biwi:read_biwi",
    "biwi_npz": "pipeline.manifest.biwi:read_biwi_npz",
    "aflw": "pipeline.manifest.aflw:read_aflw",
}
assert set(READERS) == set(FORMATS)


# --------------------------------------------------------------------------- schema

def validate_manifest(df: pd.DataFrame, where: str = "manifest") -> None:
    """Raise ``ValueError`` naming ``where`` if ``df`` is not a valid manifest."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where} lacks column(s) {missing}; expected columns {list(COLUMNS)} (write it with `hpekd index`)")
    for c in FLOAT_COLUMNS:
        if not pd.api.types.is_float_dtype(df[c]):
            raise ValueError(f"{where}: column {c!r} has dtype {df[c].dtype}; expected float32")
    for c in STRING_COLUMNS:
        if len(df) and not df[c].map(lambda v: isinstance(v, str)).all():
            raise ValueError(f"{where}: column {c!r} must hold strings (no nulls)")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{where}: column 'split' has value(s) {bad}; expected {list(SPLITS)}")
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise ValueError(f"{where}: column 'status' has value(s) {bad}; expected {list(STATUSES)}")
    dup = df["sample_id"][df["sample_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: duplicate sample_id(s) {dup.head(5).tolist()}")
    no_reason = df[(df["status"] == "rejected") & (df["reason"] == "")]
    if len(no_reason):
        raise ValueError(f"{where}: rejected row(s) without a reason, e.g. {no_reason['sample_id'].iloc[0]!r}")


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts with the manifest columns) → a DataFrame with the manifest dtypes."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype(np.float32)
    for c in STRING_COLUMNS:
        df[c] = df[c].astype(str)  # pandas' default string dtype (what read_parquet gives back)
    return df


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Validate and write ``manifest.parquet`` atomically (columns in :data:`COLUMNS` order first)."""
    validate_manifest(df, "manifest to write")
    extra = [c for c in df.columns if c not in COLUMNS]
    with atomic_path(path, ".parquet") as tmp:
        df[list(COLUMNS) + extra].to_parquet(tmp, index=False)


def _read_table(path: str | os.PathLike[str], what: str, how: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} not found: run `{how}` first")
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
        raise ValueError(f"{what} {str(p)!r} could not be read as parquet ({exc})") from exc


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate ``manifest.parquet`` (clear error naming the file if not a manifest)."""
    df = _read_table(path, "manifest", "hpekd index")
    validate_manifest(df, f"manifest {str(path)!r}")
    return df


def read_boxes(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate ``boxes.parquet`` (manifest columns + :data:`BOX_COLUMNS`)."""
    df = _read_table(path, "boxes file", "hpekd relabel")
    validate_manifest(df, f"boxes file {str(path)!r}")
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"boxes file {str(path)!r} lacks column(s) {missing}; expected the manifest columns + {list(BOX_COLUMNS)} (rerun `hpekd relabel`)")
    return df


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
    paths = [Path(r["root"]) / r["image_path"] for r in todo]
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
        log.info("%s (%s): %d rows from %s", spec.name, spec.format, len(got), spec.root)
        for row in got:
            if row["status"] != "ok":
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
    """Counts for the DVC metric: totals, per dataset/split/status, rejection reasons."""
    out: dict[str, Any] = {
        "rows": int(len(df)),
        "ok": int((df["status"] == "ok").sum()),
        "rejected": int((df["status"] == "rejected").sum()),
        "datasets": {},
    }
    for name, part in df.groupby("dataset", sort=False):
        d: dict[str, Any] = {"rows": int(len(part))}
        for split in SPLITS:
            s = part[part["split"] == split]
            if len(s):
                d[split] = {st: int((s["status"] == st).sum()) for st in STATUSES}
        rej = part[part["status"] == "rejected"]
        d["rejected_by_reason"] = {str(k): int(v) for k, v in Counter(rej["reason"]).most_common()}
        out["datasets"][str(name)] = d
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"manifest: {summary['rows']} rows, {summary['ok']} ok, {summary['rejected']} rejected"]
    for name, d in summary["datasets"].items():
        parts = [f"{split}: {d[split]['ok']} ok / {d[split]['rejected']} rejected" for split in SPLITS if split in d]
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
