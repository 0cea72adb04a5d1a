"""The teacher-label store: one Zarr v3 group per teacher run (DESIGN §6).

Layout (N = training rows, V = views, Q = bins of the bin-1 head)::

    teacher.zarr/
      zarr.json          group attributes = provenance (see ``provenance`` below)
      probs/             float16 [N, V, 3, Q]  eq. 6 distributions (pitch, yaw, roll), sharded
                         along N: one file per shard of ``shard_rows`` rows, inner chunks of
                         ``chunk_rows`` rows, Blosc-zstd (:data:`COMPRESSOR`)
      views/             float32 [N, V, 2]     (flip flag, rotation angle°) of every view
      sample_id/         string  [N]           manifest key of each row, in row order
      row/               int64   [N]           row index of each sample in boxes.parquet
      done/              uint8   [n_shards]    1 once a shard's probs are complete (one file
                                               per flag: writers never share a chunk)

The layout (all arrays, views, ids, attributes) is created FIRST, in one place
(:func:`create_layout`); writers then fill whole shards with :func:`write_shard`, which sets the
shard's ``done`` flag last. The group attributes are written last of all during creation, so
a store without them is an interrupted creation and is rebuilt.

Stores live on any path zarr/fsspec understands: a local directory, ``file://``,
``memory://`` (one process only), ``s3://`` … (:func:`store_for`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from pipeline.core.angles import ANGLES
from pipeline.model.network import LABEL_HEAD
from pipeline.teacher.ensemble import ensemble_size

log = logging.getLogger(__name__)

FORMAT = "hpekd-teacher-labels"
FORMAT_VERSION = 1

# The one compressor of the store (probs, views, row); shuffle helps fp16 distributions a lot.
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

# provenance fields that define *what* the store holds; a resume must match them exactly
IDENTITY_FIELDS = (
    "format", "format_version", "teacher", "bins", "ensemble", "input", "manifest", "views",
    "layout",
)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("hpekd")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def store_for(path: str, read_only: bool = False) -> Any:
    """A zarr store for a local path or any fsspec URL."""
    path = str(path)
    if "://" not in path:
        return zarr.storage.LocalStore(path, read_only=read_only)
    if path.startswith("memory://"):
        return zarr.storage.FsspecStore.from_url(path, read_only=read_only)
    opts = {"auto_mkdir": True} if path.startswith("file://") and not read_only else None
    return zarr.storage.FsspecStore.from_url(path, storage_options=opts, read_only=read_only)


@dataclass(frozen=True)
class Layout:
    n_rows: int
    n_views: int
    n_bins: int
    shard_rows: int
    chunk_rows: int

    def __post_init__(self) -> None:
        if self.n_rows < 1:
            raise ValueError("the label store needs at least one training row (N = 0)")
        if self.chunk_rows < 1 or self.shard_rows < 1 or self.shard_rows % self.chunk_rows:
            raise ValueError(
                f"shard_rows={self.shard_rows} must be a positive multiple of chunk_rows={self.chunk_rows}"
            )

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_rows / self.shard_rows)

    def shard_range(self, k: int) -> tuple[int, int]:
        if not 0 <= k < self.n_shards:
            raise ValueError(f"shard {k} out of range 0..{self.n_shards - 1}")
        return k * self.shard_rows, min(self.n_rows, (k + 1) * self.shard_rows)

    def to_dict(self) -> dict[str, int]:
        return dict(n_rows=self.n_rows, n_views=self.n_views, n_bins=self.n_bins,
                    shard_rows=self.shard_rows, chunk_rows=self.chunk_rows, n_shards=self.n_shards)


def provenance(
    *,
    checkpoint_sha256: str,
    model_spec: Mapping[str, Any],
    checkpoint_kind: str,
    bin_size: float,
    theta: float,
    n_bins: int,
    p: int,
    s: int,
    input_size: tuple[int, int],
    normalization: Mapping[str, Any],
    manifest_sha256: str,
    manifest_name: str,
    split: str,
    view_seed: int,
    n_views: int,
    flip_prob: float,
    max_angle: float,
    layout: Layout,
) -> dict[str, Any]:
    """The group attributes (JSON) of a store; ``created`` and ``package`` are informative."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teacher": {"sha256": checkpoint_sha256, "kind": checkpoint_kind, "model_spec": dict(model_spec),
                    "architecture": model_spec.get("backbone"), "head": LABEL_HEAD},
        "bins": {"b": bin_size, "theta": theta, "Q": n_bins},
        "ensemble": {"p": p, "s": s, "A": ensemble_size(p, s)},
        "input": {"size": [int(input_size[0]), int(input_size[1])], "normalization": dict(normalization)},
        "manifest": {"sha256": manifest_sha256, "name": manifest_name, "split": split, "status": "ok"},
        "views": {"seed": view_seed, "V": n_views, "flip_prob": flip_prob, "max_angle": max_angle,
                  "view0": "identity", "columns": ["flip", "angle_deg"]},
        "layout": layout.to_dict(),
        "angles": list(ANGLES),
        "package": {"name": "hpekd", "version": _package_version()},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def diff_provenance(a: Mapping[str, Any], b: Mapping[str, Any], fields=IDENTITY_FIELDS) -> list[str]:
    """Dotted names of the identity fields that differ between two attribute sets."""
    out: list[str] = []

    def walk(x: Any, y: Any, name: str) -> None:
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{name}.{k}")
        elif x != y:
            out.append(f"{name} ({x!r} vs {y!r})")

    for f in fields:
        walk(a.get(f), b.get(f), f)
    return out


def _group(path: str, mode: str) -> zarr.Group:
    return zarr.open_group(store_for(path, read_only=(mode == "r")), mode=mode, zarr_format=3)


def create_layout(
    path: str,
    attrs: Mapping[str, Any],
    sample_ids: list[str],
    rows: np.ndarray,
    views: np.ndarray,
) -> zarr.Group:
    """Create (overwrite) the whole store: arrays, views, ids, then the attributes."""
    lay = attrs["layout"]
    n, v, q = lay["n_rows"], lay["n_views"], lay["n_bins"]
    shard, chunk = lay["shard_rows"], lay["chunk_rows"]
    if len(sample_ids) != n or rows.shape != (n,) or views.shape != (n, v, 2):
        raise ValueError("create_layout: sample_ids/rows/views do not match the layout size")
    g = zarr.open_group(store_for(path), mode="w", zarr_format=3)
    g.create_array(
        "probs", shape=(n, v, 3, q), dtype="float16", chunks=(chunk, v, 3, q), shards=(shard, v, 3, q),
        compressors=COMPRESSOR, fill_value=0, dimension_names=["row", "view", "angle", "bin"],
    )
    one = math.ceil(n / chunk) * chunk  # a single shard file for the small per-row arrays
    va = g.create_array(
        "views", shape=(n, v, 2), dtype="float32", chunks=(chunk, v, 2), shards=(one, v, 2),
        compressors=COMPRESSOR, fill_value=0, dimension_names=["row", "view", "param"],
    )
    va[:] = views.astype(np.float32)
    ra = g.create_array(
        "row", shape=(n,), dtype="int64", chunks=(chunk,), shards=(one,), compressors=COMPRESSOR,
        fill_value=-1, dimension_names=["row"],
    )
    ra[:] = rows.astype(np.int64)
    sa = g.create_array("sample_id", shape=(n,), dtype=str, chunks=(n,), dimension_names=["row"])
    sa[:] = np.array([str(x) for x in sample_ids], dtype=object)
    g.create_array("done", shape=(lay["n_shards"],), dtype="uint8", chunks=(1,), fill_value=0,
                   compressors=None, dimension_names=["shard"])
    g.attrs.update(dict(attrs))  # last: a store with attributes is a complete layout
    return g


def open_store(path: str, mode: str = "r") -> zarr.Group:
    """Open a label store lazily (``mode="r"``) or for writing (``"r+"``); checks the format."""
    try:
        g = _group(str(path), mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"label store {str(path)!r} not found (run `hpekd teacher-labels`)") from exc
    if g.attrs.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a complete hpekd teacher-label store (format attribute "
            f"{g.attrs.get('format')!r}); rerun `hpekd teacher-labels` to (re)build it"
        )
    return g


def existing_attrs(path: str) -> dict[str, Any] | None:
    """The attributes of a store at ``path``, or None when nothing (complete) is there."""
    try:
        g = _group(str(path), "r")
    except Exception:  # noqa: BLE001 - missing or unreadable = nothing to resume
        return None
    attrs = dict(g.attrs)
    return attrs if attrs.get("format") == FORMAT else None


def layout_of(g: zarr.Group) -> Layout:
    lay = g.attrs["layout"]
    return Layout(lay["n_rows"], lay["n_views"], lay["n_bins"], lay["shard_rows"], lay["chunk_rows"])


def done_flags(g: zarr.Group) -> np.ndarray:
    """One uint8 per shard; a flag that cannot be read (torn write on a non-atomic store) is 0."""
    arr = g["done"]
    try:
        return np.asarray(arr[:], dtype=np.uint8)
    except Exception:  # noqa: BLE001
        out = np.zeros(arr.shape, dtype=np.uint8)
        for k in range(arr.shape[0]):
            try:
                out[k] = arr[k]
            except Exception:  # noqa: BLE001
                log.warning("done flag of shard %d is unreadable: treating the shard as not done", k)
        return out


def remove_partial_files(path: str) -> int:
    """Delete the ``*.partial`` temporaries a killed writer leaves in a local store."""
    local = path[len("file://"):] if path.startswith("file://") else (None if "://" in path else path)
    if local is None:
        return 0
    from pathlib import Path

    stray = [p for p in Path(local).rglob("*.partial") if p.is_file()]
    for p in stray:
        p.unlink()
    if stray:
        log.info("removed %d partial file(s) left by an interrupted writer in %s", len(stray), path)
    return len(stray)


def write_shard(g: zarr.Group, k: int, probs: np.ndarray) -> None:
    """Write shard ``k`` whole (one storage object), then set its ``done`` flag."""
    lay = layout_of(g)
    a, b = lay.shard_range(k)
    if probs.shape != (b - a, lay.n_views, 3, lay.n_bins):
        raise ValueError(f"shard {k}: probs shape {probs.shape} != {(b - a, lay.n_views, 3, lay.n_bins)}")
    g["probs"][a:b] = probs.astype(np.float16)
    g["done"][k] = 1


def load_probs(path: str) -> np.ndarray:
    """All soft labels in memory: float16 [N, V, 3, Q] (refuses an incomplete store)."""
    g = open_store(path)
    flags = done_flags(g)
    if not flags.all():
        missing = np.flatnonzero(flags == 0).tolist()
        raise ValueError(
            f"label store {str(path)!r} is incomplete: shards {missing[:10]} not done "
            "(rerun `hpekd teacher-labels` to finish it)"
        )
    return np.asarray(g["probs"][:])


def load_views(path: str) -> np.ndarray:
    """float32 [N, V, 2] (flip flag, angle°) of every stored view."""
    return np.asarray(open_store(path)["views"][:])


def load_sample_ids(path: str) -> list[str]:
    return [str(x) for x in open_store(path)["sample_id"][:]]


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

    Checks: all shards done; every shard decodes; every (row, view, angle) distribution is
    finite, non-negative and sums to 1 within ``tol`` (fp16 storage); with ``boxes``, the
    manifest hash and the ``sample_id``/``row`` arrays match the rows the job would label.
    """
    problems: list[str] = []
    g = open_store(path)
    lay = layout_of(g)
    flags = done_flags(g)
    if not flags.all():
        missing = np.flatnonzero(flags == 0).tolist()
        problems.append(f"{len(missing)} of {lay.n_shards} shards not done: {missing[:10]}")
    probs = g["probs"]
    for k in range(lay.n_shards):
        if not flags[k]:
            continue
        a, b = lay.shard_range(k)
        try:
            block = np.asarray(probs[a:b]).astype(np.float32)
        except Exception as exc:  # noqa: BLE001 - a corrupt shard fails to decode
            problems.append(f"shard {k} (rows {a}..{b - 1}) cannot be decoded: {exc.__class__.__name__}: {exc}")
            continue
        if not np.isfinite(block).all():
            bad = a + int(np.flatnonzero(~np.isfinite(block).reshape(b - a, -1).all(1))[0])
            problems.append(f"shard {k}: non-finite probabilities (first at row {bad})")
            continue
        if (block < 0).any():
            problems.append(f"shard {k}: negative probabilities")
        sums = block.sum(-1)
        err = np.abs(sums - 1.0)
        if (err > tol).any():
            r = a + int(np.unravel_index(np.argmax(err), err.shape)[0])
            problems.append(
                f"shard {k}: distributions do not sum to 1 (worst {float(sums.flat[np.argmax(err)]):.4f} "
                f"at row {r}; tolerance {tol})"
            )
    if boxes is not None:
        from pipeline.core.io import sha256_file
        from pipeline.manifest.schema import read_boxes

        attrs = g.attrs
        sha = sha256_file(boxes)
        if sha != attrs["manifest"]["sha256"]:
            problems.append(
                f"manifest {str(boxes)!r} has sha256 {sha[:12]}…, the store was made from "
                f"{attrs['manifest']['sha256'][:12]}…"
            )
        df = read_boxes(boxes)
        rows = select_rows(df, attrs["manifest"].get("split", "train"))
        want = np.array([str(x) for x in df["sample_id"].to_numpy()[rows]], dtype=object)
        have = np.array([str(x) for x in g["sample_id"][:]], dtype=object)
        if len(want) != len(have):
            problems.append(f"store has {len(have)} rows, manifest {str(boxes)!r} selects {len(want)}")
        else:
            diff = np.flatnonzero(want != have)
            if diff.size:
                i = int(diff[0])
                problems.append(
                    f"sample_id mismatch at {diff.size} rows, first row {i}: store {have[i]!r} vs manifest {want[i]!r}"
                )
            if not np.array_equal(np.asarray(g["row"][:]), rows):
                problems.append("row indices do not match the manifest's training rows")
    return problems


def select_rows(df: pd.DataFrame, split: str = "train") -> np.ndarray:
    """Indices (manifest order) of the rows the teacher labels: status ok, the given split.

    The store's row i is ``df.iloc[rows[i]]``; the student uses the same function.
    """
    mask = (df["status"].astype(str) == "ok") & (df["split"].astype(str) == split)
    return np.flatnonzero(mask.to_numpy()).astype(np.int64)
