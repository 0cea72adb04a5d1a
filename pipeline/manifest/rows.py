"""The rows of a boxes table (``boxes.parquet``, or a manifest) that a stage uses, and what they point to.

The row rule, in one place: a row is usable when its ``status`` is ``"ok"``.

- The teacher labels every usable row of its split, labelled or not (:func:`split_rows`; this
  is the label store's row order, so the student and ``hpekd labels verify`` compare a store
  with the same function).
- Training and evaluation take the usable rows of a split whose angles are known and within
  ±θ; the student also takes the unlabelled ones (:func:`select` with a :class:`RowQuery`).

A row's image is ``<root>/<image_path>`` (:func:`image_file`, :func:`image_paths`); its face box
is ``x1, y1, x2, y2`` (:func:`row_boxes`), its angles ``pitch, yaw, roll`` (:func:`row_angles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.angles import ANGLES, THETA

OK = "ok"  # the status of a usable row
BOX = ("x1", "y1", "x2", "y2")  # the face box columns of boxes.parquet


def ok_mask(df: pd.DataFrame) -> np.ndarray:
    """bool per row: status ok (any split)."""
    return (df["status"].astype(str) == OK).to_numpy()


def split_mask(df: pd.DataFrame, split: str) -> np.ndarray:
    """bool per row: status ok and in ``split``."""
    return ok_mask(df) & (df["split"].astype(str) == split).to_numpy()


def split_rows(df: pd.DataFrame, split: str = "train") -> np.ndarray:
    """int64 indices (table order) of every usable row of ``split``, labelled or not: the rows
    the teacher labels. The label store's row i is ``df.iloc[rows[i]]``."""
    return np.flatnonzero(split_mask(df, split)).astype(np.int64)


def has_rows(df: pd.DataFrame, split: str) -> bool:
    """Whether ``split`` has any usable row (e.g. is there a test set to evaluate on)."""
    return bool(split_mask(df, split).any())


def labelled_mask(df: pd.DataFrame) -> np.ndarray:
    """bool per row: the row has ground truth (a table without the column: every row)."""
    return df["labelled"].to_numpy(bool) if "labelled" in df else np.ones(len(df), dtype=bool)


def row_angles(df: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 [N, 3] (pitch, yaw, roll) of ``rows`` (default: every row); NaN when unlabelled."""
    angles = df[list(ANGLES)].to_numpy(np.float64)
    return angles if rows is None else angles[rows]


def within(angles: np.ndarray, theta: float | None) -> np.ndarray:
    """bool per row of [N, 3] ``angles``: all finite and (unless ``theta`` is None) |angle| <= θ."""
    ok = np.isfinite(angles).all(1)
    if theta is not None:
        ok &= (np.abs(np.nan_to_num(angles, nan=np.inf)) <= theta).all(1)
    return ok


@dataclass(frozen=True)
class RowQuery:
    """Which rows of a split a dataset takes (:func:`select`).

    ``datasets``: only rows of these ``dataset`` values (empty: all). Labelled rows need finite
    angles within ±``theta`` (None: any finite angles); unlabelled rows are taken only with
    ``unlabelled`` (the student, which learns them from the teacher alone).
    """

    split: str
    datasets: tuple[str, ...] = ()
    unlabelled: bool = False
    theta: float | None = THETA

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(self.datasets or ()))


@dataclass(frozen=True)
class Selection:
    """The rows a :class:`RowQuery` selects, and what it left out."""

    rows: np.ndarray  # int64 indices in table order
    dropped: int  # labelled rows with a NaN angle or an angle outside ±θ
    unlabelled_left_out: int  # unlabelled rows of the split (0 when the query takes them)


def select(df: pd.DataFrame, query: RowQuery | str, source: str = "boxes table") -> Selection:
    """The usable rows of ``query`` (a :class:`RowQuery`, or a split name: its labelled rows
    within ±99°). A dataset the split does not have is a ``ValueError`` naming ``source``; an
    empty selection is returned (each caller says in its own words what it needed)."""
    q = query if isinstance(query, RowQuery) else RowQuery(query)
    mask = split_mask(df, q.split)
    if q.datasets:
        unknown = sorted(set(q.datasets) - set(df.loc[df["split"].astype(str) == q.split, "dataset"]))
        if unknown:
            raise ValueError(f"dataset(s) {unknown} have no {q.split!r} rows in {source}")
        mask &= df["dataset"].isin(list(q.datasets)).to_numpy()
    labelled = labelled_mask(df)
    angles_ok = within(row_angles(df), q.theta)
    dropped = int((mask & labelled & ~angles_ok).sum())
    left_out = 0 if q.unlabelled else int((mask & ~labelled).sum())
    mask &= (labelled & angles_ok) | (~labelled & q.unlabelled)
    return Selection(np.flatnonzero(mask).astype(np.int64), dropped, left_out)


def image_file(root: str | Path, image_path: str) -> Path:
    """The image of a row: ``image_path`` under the row's ``root`` (a relative root is relative
    to the working directory, the project root when DVC runs a stage)."""
    return Path(root) / image_path


def image_paths(df: pd.DataFrame, rows: Sequence[int] | np.ndarray, absolute: bool = False) -> list[str]:
    """The image file of each of ``rows``. ``absolute``: resolved against the working directory
    now, for paths handed to processes that may run elsewhere (the teacher job's dask tasks)."""
    sel = df.iloc[np.asarray(rows, dtype=np.int64)]
    files = (image_file(r, p) for r, p in zip(sel["root"].astype(str), sel["image_path"].astype(str)))
    return [str(f.resolve() if absolute else f) for f in files]


def row_boxes(df: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """float64 [N, 4] face boxes (x1, y1, x2, y2) of ``rows``, in pixels."""
    return df[list(BOX)].to_numpy(np.float64)[np.asarray(rows, dtype=np.int64)]


def row_ids(df: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> list[str]:
    """The ``sample_id`` of each of ``rows``."""
    return df["sample_id"].astype(str).to_numpy()[np.asarray(rows, dtype=np.int64)].tolist()


__all__ = [
    "BOX", "OK", "RowQuery", "Selection", "has_rows", "image_file", "image_paths", "labelled_mask", "ok_mask",
    "row_angles", "row_boxes", "row_ids", "select", "split_mask", "split_rows", "within",
]
