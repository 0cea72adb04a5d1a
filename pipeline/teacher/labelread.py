"""Reading a whole label store: ``info`` and ``verify`` (``hpekd labels``), the one comparison of a
store with a boxes table (:func:`compare_with_boxes`: ``verify`` and the student's provenance
check), and the store held in memory (:class:`TeacherLabels`) that the student trains from,
loaded from one open of the store (:func:`load_teacher_labels`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import zarr

from pipeline.core.io import sha256_file
from pipeline.core.views import View, view_from_row, views_array
from pipeline.manifest.rows import row_angles, row_ids, split_rows
from pipeline.manifest.schema import read_boxes
from pipeline.teacher.encoding import Encoding, encoding_from_attrs
from pipeline.teacher.labelstore import (
    StoreDamaged,
    decode_ids,
    done_flags,
    encoding_of,
    layout_of,
    local_path,
    open_store,
    read_parts,
    read_shard,
    read_verified,
)

log = logging.getLogger(__name__)

GB = 1024**3


def store_split(attrs: Mapping[str, Any]) -> str:
    """The split whose rows a store labels (its provenance's ``manifest.split``)."""
    return (attrs.get("manifest") or {}).get("split") or "train"


# ----------------------------------------------------------------------------- the store in memory


@dataclass
class TeacherLabels:
    """A label store held in memory, its distributions still encoded (``parts``: the store's
    arrays [N, V, 3, L]; :meth:`targets` decodes the ones a batch needs)."""

    path: str
    attrs: dict[str, Any]
    encoding: Encoding
    parts: dict[str, np.ndarray]
    views: np.ndarray  # float32 [N, V, 2] (flip flag, angle°)
    sample_ids: np.ndarray  # object [N]
    rows: np.ndarray  # int64 [N], row of each sample in boxes.parquet
    _positions: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_views(self) -> int:
        return int(self.views.shape[1])

    @property
    def n_bins(self) -> int:
        return self.encoding.n_bins

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.parts.values()) + self.views.nbytes + self.rows.nbytes)

    def probs(self) -> np.ndarray:
        """Every distribution decoded: float32 [N, V, 3, Q] (the whole store; tests and tools)."""
        return self.encoding.decode(self.parts)

    def targets(self, pos: np.ndarray | int, view: np.ndarray | int) -> np.ndarray:
        """Decoded distributions of store rows ``pos``, views ``view``: float32 [..., 3, Q]."""
        return self.encoding.decode({k: a[pos, view] for k, a in self.parts.items()})

    @property
    def split(self) -> str:
        return store_split(self.attrs)

    def view(self, pos: int, v: int) -> View:
        """The geometric view ``v`` of store row ``pos`` (what the teacher saw)."""
        return view_from_row(self.views[pos, v])

    def positions(self, n_boxes_rows: int) -> np.ndarray:
        """int64 [n_boxes_rows]: the store row of each boxes-table row, -1 where the store has
        none. Built once and shared (the student's view replay and its soft-target lookup)."""
        if self._positions is None or len(self._positions) != n_boxes_rows:
            pos = np.full(n_boxes_rows, -1, dtype=np.int64)
            pos[self.rows] = np.arange(len(self.rows))
            self._positions = pos
        return self._positions


def available_memory() -> int:
    """Bytes of RAM available to this process now (psutil, else ``sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62


def store_nbytes(layout: Mapping[str, int], encoding: Encoding) -> int:
    """In-memory size of a store: its encoded distributions + views (float32) + rows (int64)."""
    n, v = int(layout["n_rows"]), int(layout["n_views"])
    return n * v * encoding.bytes_per_view() + n * v * 2 * 4 + n * 8


def check_memory(nbytes: int, max_gb: float, path: str, available: int | None = None) -> None:
    """Refuse a store that is over the configured limit or over 80 % of the available RAM."""
    avail = available_memory() if available is None else available
    need = nbytes / GB
    if nbytes > max_gb * GB:
        raise ValueError(
            f"label store {path!r} needs {need:.2f} GiB in memory, more than train_student.max_label_memory_gb="
            f"{max_gb:g}: raise that limit if the machine has the RAM (available now: {avail / GB:.1f} GiB), or "
            "train on fewer rows/views (teacher_labels.views)"
        )
    if nbytes > 0.8 * avail:
        raise ValueError(
            f"label store {path!r} needs {need:.2f} GiB in memory but only {avail / GB:.1f} GiB are available "
            "(the student loads it whole): free memory, use a machine with more RAM, or build a store with "
            "fewer views (teacher_labels.views)"
        )


def load_teacher_labels(path: str | os.PathLike[str], max_gb: float = 16.0) -> TeacherLabels:
    """Open the store once, check that it fits in memory, then load it whole (logs its size)."""
    path = str(path)
    g = open_store(path)
    attrs = dict(g.attrs)
    lay = attrs.get("layout") or {}
    if not {"n_rows", "n_views", "n_bins"} <= set(lay):
        raise ValueError(f"label store {path!r} has no layout attribute: rebuild it with `hpekd teacher-labels`")
    enc = encoding_from_attrs(attrs, path)
    nbytes = store_nbytes(lay, enc)
    check_memory(nbytes, max_gb, path)
    log.info("loading label store %s: N=%d rows, V=%d views, Q=%d bins, encoding %s, %.1f MiB in memory",
             path, lay["n_rows"], lay["n_views"], lay["n_bins"], enc.name, nbytes / 2**20)
    # every array is checked against the digests recorded by the writer (and holds what its
    # encoding writes): a damaged store is refused in one line naming the shard, never trained on
    parts = read_parts(g, path)
    views = read_verified(g, "views", path)
    ids = np.array(decode_ids(read_verified(g, "sample_id", path)), dtype=object)
    rows = read_verified(g, "boxes_row", path)
    n = len(rows)
    if any(a.shape[:2] != views.shape[:2] for a in parts.values()) or len(ids) != n or views.shape[0] != n:
        raise ValueError(
            f"label store {path!r} is inconsistent: {', '.join(f'{k} {a.shape}' for k, a in parts.items())}, "
            f"views {views.shape}, {len(ids)} sample ids, {len(rows)} rows"
        )
    return TeacherLabels(path, attrs, enc, parts, views, ids, rows)


# ----------------------------------------------------------------------------- store vs boxes table


@dataclass(frozen=True)
class Mismatch:
    """One way a store differs from a boxes table (:func:`compare_with_boxes`); each caller
    words it its own way (a line of ``verify``, the student's ``ValueError``)."""

    field: str  # "manifest.sha256", "sample_id" or "row"
    store: Any  # the store's value (sample_id: the id at ``first``, or the row count)
    table: Any  # the boxes table's
    first: int | None = None  # sample_id: first differing store row; None: the row counts differ
    count: int = 0  # sample_id: how many rows differ


def compare_with_boxes(
    attrs: Mapping[str, Any],
    sample_ids: Sequence[str] | np.ndarray | None,
    rows: np.ndarray | None,
    boxes_sha256: str,
    boxes: pd.DataFrame,
) -> list[Mismatch]:
    """How a store differs from the boxes table it should label (empty: it matches).

    In order: the table's sha256 against the store's ``manifest.sha256``; the store's sample
    ids, then its row indices, against the table's usable rows of the store's split
    (:func:`pipeline.manifest.rows.split_rows`, the rows the teacher job labels). ``sample_ids``
    or ``rows`` None: not compared (unreadable in the store).
    """
    out: list[Mismatch] = []
    store_sha = (attrs.get("manifest") or {}).get("sha256")
    if store_sha != boxes_sha256:
        out.append(Mismatch("manifest.sha256", store_sha, boxes_sha256))
    want_rows = split_rows(boxes, store_split(attrs))
    if sample_ids is not None:
        want = np.array(row_ids(boxes, want_rows), dtype=object)
        have = np.asarray(sample_ids, dtype=object)
        if len(want) != len(have):
            out.append(Mismatch("sample_id", len(have), len(want)))
        else:
            diff = np.flatnonzero(want != have)
            if diff.size:
                i = int(diff[0])
                out.append(Mismatch("sample_id", have[i], want[i], first=i, count=int(diff.size)))
    if rows is not None and not np.array_equal(rows, want_rows):
        out.append(Mismatch("row", "store row indices", "the boxes table's training rows"))
    return out


# ----------------------------------------------------------------------------- hpekd labels


def info(path: str) -> dict[str, Any]:
    """Provenance and completeness of a store (for ``hpekd labels info``)."""
    g = open_store(path)
    flags = done_flags(g)
    lay = layout_of(g)
    enc = encoding_of(g, path)
    rows_done = sum(lay.shard_range(k)[1] - lay.shard_range(k)[0] for k in np.flatnonzero(flags))
    return {
        "path": str(path),
        "attributes": dict(g.attrs),
        "encoding": enc.name,
        "bytes_per_image_view": enc.bytes_per_view(),
        "label_bytes": label_bytes(path, enc),
        "shards_done": int(flags.sum()),
        "shards_total": lay.n_shards,
        "rows_done": int(rows_done),
        "rows_total": lay.n_rows,
        "complete": bool(flags.all()),
    }


def label_bytes(path: str, encoding: Encoding) -> int | None:
    """Bytes on disk of the distribution arrays of a local store (compressed shards and their
    metadata); None for a remote URL."""
    local = local_path(str(path))
    if local is None:
        return None
    return sum(f.stat().st_size for a in encoding.arrays() for f in (local / a.name).rglob("*") if f.is_file())


def verify(path: str, boxes: str | None = None, tol: float = 2e-3) -> list[str]:
    """Problems found in a store (empty list = good).

    Checks: all shards done; every shard decodes, matches its digest and holds distributions
    (finite, non-negative, summing to 1 within ``tol``); ``views``/``sample_id``/``boxes_row``
    match their digests, and ``views`` equals the views regenerated from (seed, sample_id,
    view); with ``boxes``, the manifest hash and the ids/rows match the rows the job labels
    (:func:`compare_with_boxes`).
    """
    g = open_store(path)
    problems = _shard_problems(g, path, tol)
    arrays, unreadable = _read_small_arrays(g, path)
    problems += unreadable
    poses = None
    if boxes is not None:
        sha = sha256_file(boxes)
        ids = decode_ids(arrays["sample_id"]) if "sample_id" in arrays else None
        df = read_boxes(boxes)
        found = compare_with_boxes(g.attrs, ids, arrays.get("boxes_row"), sha, df)
        problems += [_boxes_problem(m, boxes) for m in found]
        if not found:  # the store's rows are this table's: its labels are the ones the job fitted views to
            poses = row_angles(df, split_rows(df, store_split(g.attrs)))
    if "sample_id" in arrays and "views" in arrays:
        problems += _views_problems(g.attrs, decode_ids(arrays["sample_id"]), arrays["views"], poses)
    return problems


def _shard_problems(g: zarr.Group, path: str, tol: float) -> list[str]:
    """Shards not done, and done shards that do not decode, match their digest or hold distributions."""
    problems: list[str] = []
    lay = layout_of(g)
    flags = done_flags(g)
    if not flags.all():
        missing = np.flatnonzero(flags == 0).tolist()
        problems.append(f"{len(missing)} of {lay.n_shards} shards not done: {missing[:10]}")
    for k in np.flatnonzero(flags):
        try:
            read_shard(g, int(k), path, tol)
        except StoreDamaged as exc:
            problems.append(str(exc))
    return problems


def _read_small_arrays(g: zarr.Group, path: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """``views``, ``sample_id`` and ``boxes_row`` as stored (digest or not: the content checks run
    on what is there), and the problems met: a digest mismatch, an unreadable array."""
    arrays: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for name in ("views", "sample_id", "boxes_row"):
        try:
            read_verified(g, name, path)
        except StoreDamaged as exc:
            problems.append(str(exc))
        try:
            arrays[name] = np.asarray(g[name][:])
        except Exception as exc:  # noqa: BLE001
            problems.append(f"array {name!r} cannot be read ({exc.__class__.__name__}: {exc})")
    return arrays, problems


def _views_problems(attrs: Mapping[str, Any], sample_ids: list[str], views: np.ndarray,
                    poses: np.ndarray | None = None) -> list[str]:
    """The stored views against the views the job draws, with the function the job uses
    (:func:`~pipeline.core.views.views_array`). With the rows' labels (``poses``) the match is
    exact: a view whose rotation would take its label outside ±99° was stored without it. Without
    the labels, a view may be its draw or its draw without the rotation."""
    v = attrs["views"]
    regen = views_array(sample_ids, v["V"], v["seed"], v["flip_prob"], v["max_angle"], poses=poses)
    if regen.shape != views.shape:
        return [f"views have shape {views.shape}, the store's section says {regen.shape}"]
    ok = (regen == views).all(-1)
    if poses is None:
        unrotated = regen.copy()
        unrotated[..., 1] = 0.0
        ok |= (unrotated == views).all(-1)
    if ok.all():
        return []
    bad = int(np.flatnonzero(~ok.all(1))[0])
    how = "the labels of the boxes table" if poses is not None else "(seed, sample_id, view)"
    return [f"views differ from the views drawn from {how}, first at row {bad}"]


def _boxes_problem(m: Mismatch, boxes: str) -> str:
    """One line of ``verify`` for a :class:`Mismatch` with the boxes file ``boxes``."""
    if m.field == "manifest.sha256":
        return f"manifest {str(boxes)!r} has sha256 {m.table[:12]}…, the store was made from {m.store[:12]}…"
    if m.field == "sample_id" and m.first is None:
        return f"store has {m.store} rows, manifest {str(boxes)!r} selects {m.table}"
    if m.field == "sample_id":
        return f"sample_id mismatch at {m.count} rows, first row {m.first}: store {m.store!r} vs manifest {m.table!r}"
    return "boxes_row indices do not match the manifest's training rows"


__all__ = [
    "GB", "Mismatch", "TeacherLabels", "available_memory", "check_memory", "compare_with_boxes", "info",
    "label_bytes", "load_teacher_labels", "store_nbytes", "store_split", "verify",
]
