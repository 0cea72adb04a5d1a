"""The manifest (docs/design.md §7): one row per face of every configured dataset.

Columns (:data:`COLUMNS`): ``sample_id`` (``<dataset>/<image_path>#<face>``, stable),
``dataset``, ``split`` (train|test), ``root`` (the dataset root as given in params; for
``biwi_npz`` the folder its images were extracted to), ``image_path`` (relative to ``root``),
``pitch, yaw, roll`` (float32 degrees, NaN if unknown), ``lm_x1, lm_y1, lm_x2, lm_y2`` (float32
landmark box, NaN if none; rule in :mod:`pipeline.manifest.landmarks`), ``face_x1, face_y1,
face_x2, face_y2`` (float32 face box given with the dataset — the ``table`` format's optional
``x1..y2`` — NaN if none; used by ``relabel.source: table``), ``group`` (BIWI sequence or the
table's ``group``, else ""), ``labelled`` (bool: the row has ground-truth angles; false for
``format: images`` and table rows with empty angle cells, whose angles are NaN), ``status``
(ok|rejected), ``reason`` ("" when ok).

Unlabelled rows (``labelled = false``) are training rows only: the teacher labels them and the
student learns them from the distillation term alone; stage 1 and every evaluation skip them.

Rows are never dropped: an angle outside [−99, 99] → ``rejected`` / "angle out of range"; a
broken file → an error naming it (``on_error: raise``) or a rejected row with its reason
(``on_error: reject``); see :mod:`pipeline.manifest.spec`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.io import atomic_path

COLUMNS = (
    "sample_id", "dataset", "split", "root", "image_path", "pitch", "yaw", "roll",
    "lm_x1", "lm_y1", "lm_x2", "lm_y2", "face_x1", "face_y1", "face_x2", "face_y2", "group", "labelled",
    "status", "reason",
)
FACE_BOX_COLUMNS = ("face_x1", "face_y1", "face_x2", "face_y2")
FLOAT_COLUMNS = ("pitch", "yaw", "roll", "lm_x1", "lm_y1", "lm_x2", "lm_y2", *FACE_BOX_COLUMNS)
STRING_COLUMNS = ("sample_id", "dataset", "split", "root", "image_path", "group", "status", "reason")
BOX_COLUMNS = ("x1", "y1", "x2", "y2", "box_source", "det_score", "fallback")
STATUSES = ("ok", "rejected")
SPLITS = ("train", "test")


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
    if not pd.api.types.is_bool_dtype(df["labelled"]):
        raise ValueError(f"{where}: column 'labelled' has dtype {df['labelled'].dtype}; expected bool")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{where}: column 'split' has value(s) {bad}; expected {list(SPLITS)}")
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise ValueError(f"{where}: column 'status' has value(s) {bad}; expected {list(STATUSES)}")
    dup = df["sample_id"][df["sample_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: duplicate sample_id(s) {dup.head(5).tolist()}")
    ok = df["status"] == "ok"
    angles = df[["pitch", "yaw", "roll"]].to_numpy(np.float64)
    bad = df["sample_id"][ok & df["labelled"] & ~np.isfinite(angles).all(1)]
    if len(bad):
        raise ValueError(f"{where}: labelled row(s) with a non-finite angle, e.g. {bad.iloc[0]!r}")
    bad = df["sample_id"][ok & ~df["labelled"] & (df["split"] != "train")]
    if len(bad):
        raise ValueError(f"{where}: unlabelled row(s) outside the train split, e.g. {bad.iloc[0]!r}")
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
    df["labelled"] = df["labelled"].astype(bool)
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
    """Read and validate ``boxes.parquet`` (manifest columns + :data:`BOX_COLUMNS`), rows in file
    order with a fresh index (row i = manifest row i = label-store row order). The one reader of
    the boxes table; every problem is a ``ValueError`` naming the file."""
    df = _read_table(path, "boxes file", "hpekd relabel")
    validate_manifest(df, f"boxes file {str(path)!r}")
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"boxes file {str(path)!r} lacks column(s) {missing}; expected the manifest columns + {list(BOX_COLUMNS)} (rerun `hpekd relabel`)")
    return df.reset_index(drop=True)
