"""Reading a whole label store: ``info`` and ``verify`` (``hpekd labels``), and the store held in
memory (:class:`TeacherLabels`) that the student trains from."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.views import View, view_from_row
from pipeline.manifest.rows import split_rows
from pipeline.teacher import labelstore
from pipeline.teacher.labelstore import (
    StoreDamaged,
    _verified,
    decode_ids,
    done_flags,
    layout_of,
    open_store,
    read_shard,
)

log = logging.getLogger(__name__)

GB = 1024**3


@dataclass
class TeacherLabels:
    """A label store held in memory."""

    path: str
    attrs: dict[str, Any]
    probs: np.ndarray  # float16 [N, V, 3, Q]
    views: np.ndarray  # float32 [N, V, 2] (flip flag, angle°)
    sample_ids: np.ndarray  # object [N]
    rows: np.ndarray  # int64 [N], row of each sample in boxes.parquet

    @property
    def n_views(self) -> int:
        return int(self.probs.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.probs.nbytes + self.views.nbytes + self.rows.nbytes)

    def view(self, pos: int, v: int) -> View:
        """The geometric view ``v`` of store row ``pos`` (what the teacher saw)."""
        return view_from_row(self.views[pos, v])


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


def store_nbytes(layout: Mapping[str, int]) -> int:
    """In-memory size of a store: probs (float16) + views (float32) + rows (int64)."""
    n, v, q = int(layout["n_rows"]), int(layout["n_views"]), int(layout["n_bins"])
    return n * v * 3 * q * 2 + n * v * 2 * 4 + n * 8


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
    """Open the store, check that it fits in memory, then load it whole (logs its size)."""
    path = str(path)
    g = labelstore.open_store(path)
    attrs = dict(g.attrs)
    lay = attrs.get("layout") or {}
    if not {"n_rows", "n_views", "n_bins"} <= set(lay):
        raise ValueError(f"label store {path!r} has no layout attribute: rebuild it with `hpekd teacher-labels`")
    nbytes = store_nbytes(lay)
    check_memory(nbytes, max_gb, path)
    log.info("loading label store %s: N=%d rows, V=%d views, Q=%d bins, %.1f MiB in memory",
             path, lay["n_rows"], lay["n_views"], lay["n_bins"], nbytes / 2**20)
    # every loader verifies the digests recorded by the writer (and probs are distributions):
    # a damaged store is refused in one line naming the shard, never trained on
    probs = labelstore.load_probs(path)
    views = labelstore.load_views(path)
    ids = np.array(labelstore.load_sample_ids(path), dtype=object)
    rows = labelstore.load_rows(path)
    n = probs.shape[0]
    if views.shape[:2] != probs.shape[:2] or len(ids) != n or len(rows) != n:
        raise ValueError(
            f"label store {path!r} is inconsistent: probs {probs.shape}, views {views.shape}, "
            f"{len(ids)} sample ids, {len(rows)} rows"
        )
    return TeacherLabels(path, attrs, probs, views, ids, rows)


def info(path: str) -> dict[str, Any]:
    """Provenance and completeness of a store (for ``hpekd labels info``)."""
    g = open_store(path)
    flags = done_flags(g)
    lay = layout_of(g)
    rows_done = sum(lay.shard_range(k)[1] - lay.shard_range(k)[0] for k in np.flatnonzero(flags))
    return {
        "path": str(path),
        "attributes": dict(g.attrs),
        "shards_done": int(flags.sum()),
        "shards_total": lay.n_shards,
        "rows_done": int(rows_done),
        "rows_total": lay.n_rows,
        "complete": bool(flags.all()),
    }


def verify(path: str, boxes: str | None = None, tol: float = 2e-3) -> list[str]:
    """Problems found in a store (empty list = good).

    Checks: all shards done; every shard decodes, matches its digest and holds distributions
    (finite, non-negative, summing to 1 within ``tol``); ``views``/``sample_id``/``boxes_row``
    match their digests, and ``views`` equals the views regenerated from (seed, sample_id,
    view); with ``boxes``, the manifest hash and the ids/rows match the rows the job labels.
    """
    from pipeline.core.views import views_array

    problems: list[str] = []
    g = open_store(path)
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
    arrays: dict[str, np.ndarray] = {}
    for name in ("views", "sample_id", "boxes_row"):
        try:
            _verified(g, name, path)
        except StoreDamaged as exc:
            problems.append(str(exc))
        try:  # the content checks below run on what is there, digest or not
            arrays[name] = np.asarray(g[name][:])
        except Exception as exc:  # noqa: BLE001
            problems.append(f"array {name!r} cannot be read ({exc.__class__.__name__}: {exc})")
    attrs = g.attrs
    if "sample_id" in arrays and "views" in arrays:
        v = attrs["views"]
        regen = views_array(decode_ids(arrays["sample_id"]), v["V"], v["seed"], v["flip_prob"], v["max_angle"])
        if not np.array_equal(regen, arrays["views"]):
            bad = int(np.flatnonzero((regen != arrays["views"]).reshape(len(regen), -1).any(1))[0])
            problems.append(f"views differ from the views drawn from (seed, sample_id, view), first at row {bad}")
    if boxes is not None:
        from pipeline.core.io import sha256_file
        from pipeline.manifest.schema import read_boxes

        sha = sha256_file(boxes)
        if sha != attrs["manifest"]["sha256"]:
            problems.append(
                f"manifest {str(boxes)!r} has sha256 {sha[:12]}…, the store was made from "
                f"{attrs['manifest']['sha256'][:12]}…"
            )
        df = read_boxes(boxes)
        rows = split_rows(df, attrs["manifest"].get("split", "train"))
        want = np.array([str(x) for x in df["sample_id"].to_numpy()[rows]], dtype=object)
        if "sample_id" in arrays:
            have = np.array(decode_ids(arrays["sample_id"]), dtype=object)
            if len(want) != len(have):
                problems.append(f"store has {len(have)} rows, manifest {str(boxes)!r} selects {len(want)}")
            else:
                diff = np.flatnonzero(want != have)
                if diff.size:
                    i = int(diff[0])
                    problems.append(
                        f"sample_id mismatch at {diff.size} rows, first row {i}: store {have[i]!r} vs manifest {want[i]!r}"
                    )
        if "boxes_row" in arrays and not np.array_equal(arrays["boxes_row"], rows):
            problems.append("boxes_row indices do not match the manifest's training rows")
    return problems

