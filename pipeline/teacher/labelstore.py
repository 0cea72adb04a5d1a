"""The teacher-label store: one Zarr v3 group per teacher run (docs/design.md §6).

The format (arrays, shapes, attributes, digests) is specified once, in docs/design.md §6; this
module writes and checks it. Its attributes are a :class:`pipeline.teacher.provenance.Provenance`.

The layout (all arrays, views, ids, attributes) is created FIRST, in one place
(:func:`create_layout`); writers then fill whole shards with :func:`write_shard`, which sets the
shard's flag and digest last. The group attributes are written last of all during creation,
so a store without them is an interrupted creation. The attributes also hold the sha256 of
``views``, ``sample_id`` and ``boxes_row`` (``content``).

Every reader goes through :mod:`pipeline.teacher.labelread` (the one reader: it checks the
digests and the encoding's value rules and refuses a damaged store in one line naming the store
and shard), built on :func:`read_parts` / :func:`read_verified` here.

Stores live on any path zarr/fsspec understands: a local directory, ``file://``,
``memory://`` (one process only), ``s3://`` … (:func:`store_for`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from pipeline.teacher.encoding import Encoding, encoding_from_attrs
from pipeline.teacher.provenance import FORMAT, FORMAT_VERSION, IDENTITY_FIELDS

log = logging.getLogger(__name__)


# The one compressor of the store (probs, views, boxes_row); shuffle helps fp16 distributions a lot.
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

DIGEST_BYTES = 32
REPAIR = "rerun `hpekd teacher-labels` with the same inputs: it recomputes only the damaged shards"
REBUILD = "rebuild it with `hpekd teacher-labels`"


class StoreDamaged(ValueError):
    """A label store whose bytes do not match what was written (one-line message)."""


def package_version() -> str:
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


def provenance_sha256(attrs: Mapping[str, Any]) -> str:
    """sha256 of the identity fields: names what a job writes (kept in its lease)."""
    ident = {f: attrs.get(f) for f in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _group(path: str, mode: str) -> zarr.Group:
    return zarr.open_group(store_for(path, read_only=(mode == "r")), mode=mode, zarr_format=3)


def digest(parts: Mapping[str, np.ndarray], encoding: Encoding) -> bytes:
    """sha256 of a shard's encoded arrays as stored (C order), in the encoding's array order."""
    h = hashlib.sha256()
    for a in encoding.arrays():
        h.update(np.ascontiguousarray(parts[a.name], dtype=a.dtype).tobytes())
    return h.digest()


def encoding_of(g: zarr.Group, path: str | None = None) -> Encoding:
    """The encoding of an open store (refused, naming it, when this hpekd does not know it)."""
    return encoding_from_attrs(g.attrs, str(path if path is not None else g.store))


def _sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def encode_ids(sample_ids: Sequence[str]) -> np.ndarray:
    """uint8 [N, L]: each id's UTF-8 bytes, zero-padded (ids never contain NUL)."""
    raw = [str(s).encode("utf-8") for s in sample_ids]
    if any(b"\0" in r for r in raw):
        raise ValueError("sample ids must not contain NUL characters")
    width = max([len(r) for r in raw] + [1])
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for i, r in enumerate(raw):
        out[i, : len(r)] = np.frombuffer(r, dtype=np.uint8)
    return out


def decode_ids(codes: np.ndarray) -> list[str]:
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in np.asarray(codes, dtype=np.uint8)]


def create_layout(
    path: str,
    attrs: Mapping[str, Any],
    sample_ids: list[str],
    rows: np.ndarray,
    views: np.ndarray,
) -> zarr.Group:
    """Create (overwrite) the whole store: arrays, views, ids, then the attributes."""
    lay = attrs["layout"]
    n, v = lay["n_rows"], lay["n_views"]
    shard, chunk = lay["shard_rows"], lay["chunk_rows"]
    if len(sample_ids) != n or rows.shape != (n,) or views.shape != (n, v, 2):
        raise ValueError("create_layout: sample_ids/rows/views do not match the layout size")
    views = np.ascontiguousarray(views, dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    ids = encode_ids(sample_ids)
    g = zarr.open_group(store_for(path), mode="w", zarr_format=3)
    for a in encoding_from_attrs(attrs, str(path)).arrays():
        g.create_array(
            a.name, shape=(n, v, 3, a.last), dtype=a.dtype, chunks=(chunk, v, 3, a.last),
            shards=(shard, v, 3, a.last), compressors=COMPRESSOR, fill_value=0,
            dimension_names=["row", "view", "angle", a.last_name],
        )
    one = math.ceil(n / chunk) * chunk  # a single shard file for the small per-row arrays
    va = g.create_array(
        "views", shape=(n, v, 2), dtype="float32", chunks=(chunk, v, 2), shards=(one, v, 2),
        compressors=COMPRESSOR, fill_value=0, dimension_names=["row", "view", "param"],
    )
    va[:] = views
    ra = g.create_array(
        "boxes_row", shape=(n,), dtype="int64", chunks=(chunk,), shards=(one,), compressors=COMPRESSOR,
        fill_value=-1, dimension_names=["row"],
    )
    ra[:] = rows
    sa = g.create_array("sample_id", shape=ids.shape, dtype="uint8", chunks=ids.shape, fill_value=0,
                        compressors=COMPRESSOR, dimension_names=["row", "byte"])
    sa[:] = ids
    g.create_array("done", shape=(lay["n_shards"], 1 + DIGEST_BYTES), dtype="uint8", chunks=(1, 1 + DIGEST_BYTES),
                   fill_value=0, compressors=None, dimension_names=["shard", "flag_sha256"])
    full = dict(attrs)
    full["content"] = {"views_sha256": _sha(views), "boxes_row_sha256": _sha(rows), "sample_id_sha256": _sha(ids),
                       "sample_id_encoding": "utf-8, zero-padded uint8 rows"}
    g.attrs.update(full)  # last: a store with attributes is a complete layout
    return g


def open_store(path: str, mode: str = "r") -> zarr.Group:
    """Open a label store lazily (``mode="r"``) or for writing (``"r+"``); checks the format
    and that every array is there with the shape and type of the layout."""
    try:
        g = _group(str(path), mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"label store {str(path)!r} not found (run `hpekd teacher-labels`)") from exc
    except Exception as exc:  # noqa: BLE001 - unreadable group metadata
        raise StoreDamaged(f"label store {str(path)!r} cannot be opened ({exc.__class__.__name__}: {exc}); {REBUILD}") from exc
    if g.attrs.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a complete hpekd teacher-label store (format attribute "
            f"{g.attrs.get('format')!r}); rerun `hpekd teacher-labels` to (re)build it"
        )
    if g.attrs.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"label store {str(path)!r} has format version {g.attrs.get('format_version')!r}, this hpekd reads "
            f"version {FORMAT_VERSION}; {REBUILD}"
        )
    lay = layout_of(g)
    want = {a.name: (a.dtype, (lay.n_rows, lay.n_views, 3, a.last)) for a in encoding_of(g, path).arrays()}
    want.update({"views": ("float32", (lay.n_rows, lay.n_views, 2)), "boxes_row": ("int64", (lay.n_rows,)),
                 "sample_id": ("uint8", None), "done": ("uint8", (lay.n_shards, 1 + DIGEST_BYTES))})
    for name, (dtype, shape) in want.items():
        try:
            arr = g[name]
        except Exception as exc:  # noqa: BLE001 - KeyError, or unreadable zarr.json
            raise StoreDamaged(
                f"label store {str(path)!r} is damaged: array {name!r} is missing or its metadata is unreadable "
                f"({exc.__class__.__name__}); {REBUILD}"
            ) from exc
        if str(arr.dtype) != dtype or (shape is not None and tuple(arr.shape) != shape) or (
                name == "sample_id" and (arr.ndim != 2 or arr.shape[0] != lay.n_rows)):
            raise StoreDamaged(
                f"label store {str(path)!r} is damaged: array {name!r} is {arr.dtype} {tuple(arr.shape)}, the layout "
                f"says {dtype} {shape or ('N', 'L')}; {REBUILD}"
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


def _shard_state(g: zarr.Group, k: int) -> np.ndarray:
    """Flag + digest of shard ``k``; all zeros (not done) when unreadable (a torn write)."""
    try:
        return np.asarray(g["done"][k], dtype=np.uint8)
    except Exception:  # noqa: BLE001
        log.warning("done flag of shard %d is unreadable: treating the shard as not done", k)
        return np.zeros(1 + DIGEST_BYTES, dtype=np.uint8)


def done_flags(g: zarr.Group) -> np.ndarray:
    """One uint8 per shard (1 = its writer finished); unreadable flags count as 0."""
    arr = g["done"]
    try:
        return np.asarray(arr[:, 0], dtype=np.uint8)
    except Exception:  # noqa: BLE001
        return np.array([_shard_state(g, k)[0] for k in range(arr.shape[0])], dtype=np.uint8)


def local_path(path: str) -> Path | None:
    """The local directory of a store path (``file://`` included), None for other URLs."""
    return Path(path[len("file://"):]) if path.startswith("file://") else (None if "://" in path else Path(path))


def remove_partial_files(path: str) -> int:
    """Delete the ``*.partial`` temporaries a killed writer leaves in a local store."""
    local = local_path(path)
    if local is None:
        return 0
    stray = [p for p in local.rglob("*.partial") if p.is_file()]
    for p in stray:
        p.unlink()
    if stray:
        log.info("removed %d partial file(s) left by an interrupted writer in %s", len(stray), path)
    return len(stray)


def write_shard(g: zarr.Group, k: int, probs: np.ndarray, lease: Any = None) -> None:
    """Encode shard ``k``'s distributions (float [rows, V, 3, Q]) with the store's encoding and
    write each array's shard whole (one storage object each), then the flag and digest (one object).

    ``lease``: a :class:`pipeline.teacher.lease.Lease`, checked before each of the two writes.
    """
    lay = layout_of(g)
    a, b = lay.shard_range(k)
    if probs.shape != (b - a, lay.n_views, 3, lay.n_bins):
        raise ValueError(f"shard {k}: probs shape {probs.shape} != {(b - a, lay.n_views, 3, lay.n_bins)}")
    enc = encoding_of(g)
    parts = enc.encode(probs)
    state = np.frombuffer(b"\x01" + digest(parts, enc), dtype=np.uint8)
    if lease is not None:
        lease.check()
    for spec in enc.arrays():
        # a whole-shard write still reads an existing shard object (to merge it): drop a damaged
        # one first, so a rerun can replace it
        arr = g[spec.name]
        sync(g.store.delete(f"{arr.path}/{arr.metadata.encode_chunk_key((k, 0, 0, 0))}"))
        arr[a:b] = parts[spec.name]
    if lease is not None:
        lease.check()
    g["done"][k] = state


def read_shard(g: zarr.Group, k: int, path: str, tol: float = 2e-3, values: bool = True) -> dict[str, np.ndarray]:
    """Shard ``k``'s encoded arrays, verified: done, its digest matches, and (``values``) the
    encoding's value rules hold (float16: every distribution finite, non-negative and summing to
    1 within ``tol``). Raises :class:`StoreDamaged` naming the store, the shard and its rows."""
    lay = layout_of(g)
    enc = encoding_of(g, path)
    a, b = lay.shard_range(k)
    where = f"label store {str(path)!r}: shard {k} (rows {a}..{b - 1})"
    state = _shard_state(g, k)
    if not state[0]:
        raise StoreDamaged(f"{where} is not done (an interrupted run); {REPAIR}")
    try:
        parts = {spec.name: np.asarray(g[spec.name][a:b]) for spec in enc.arrays()}
    except Exception as exc:  # noqa: BLE001 - codec errors: truncated or corrupt shard file
        raise StoreDamaged(f"{where} cannot be decoded ({exc.__class__.__name__}: {exc}); {REPAIR}") from exc
    if digest(parts, enc) != state[1:].tobytes():
        raise StoreDamaged(
            f"{where} does not match the sha256 recorded when it was written (shard file damaged, "
            f"truncated, deleted or swapped); {REPAIR}"
        )
    if values:
        problem = enc.value_problem(parts, tol)
        if problem:
            raise StoreDamaged(f"{where}: {problem}; {REPAIR}")
    return parts


def verified_shards(g: zarr.Group, path: str, shards: Sequence[int] | None = None) -> np.ndarray:
    """bool per shard (of ``shards``, default all): done and its bytes match its digest, i.e.
    what a resume may keep; a damaged shard is logged and counts as not done."""
    ks = range(layout_of(g).n_shards) if shards is None else shards
    ok = np.zeros(layout_of(g).n_shards, dtype=bool)
    for k in ks:
        if not _shard_state(g, k)[0]:
            continue
        try:
            read_shard(g, k, path, values=False)
            ok[k] = True
        except StoreDamaged as exc:
            log.warning("%s", exc)
    return ok


def read_parts(g: zarr.Group, path: str, tol: float = 2e-3) -> dict[str, np.ndarray]:
    """All encoded arrays of the open store ``g`` (at ``path``, for messages), verified shard by
    shard: {name: [N, V, 3, L]} in the store's encoding (decode with :func:`encoding_of`)."""
    lay = layout_of(g)
    enc = encoding_of(g, path)
    flags = done_flags(g)
    if not flags.all():
        missing = np.flatnonzero(flags == 0).tolist()
        raise ValueError(
            f"label store {str(path)!r} is incomplete: shards {missing[:10]} not done "
            "(rerun `hpekd teacher-labels` to finish it)"
        )
    out = {a.name: np.empty((lay.n_rows, lay.n_views, 3, a.last), dtype=a.dtype) for a in enc.arrays()}
    for k in range(lay.n_shards):
        a, b = lay.shard_range(k)
        for name, block in read_shard(g, k, path, tol).items():
            out[name][a:b] = block
    return out


def read_verified(g: zarr.Group, name: str, path: str) -> np.ndarray:
    """Array ``name`` (``views``, ``sample_id`` or ``boxes_row``) of the open store ``g``, checked
    against the sha256 recorded at creation."""
    arr = np.asarray(g[name][:])
    want = (g.attrs.get("content") or {}).get(f"{name}_sha256")
    if want is None or _sha(arr) != want:
        raise StoreDamaged(f"label store {str(path)!r}: array {name!r} does not match its recorded sha256 "
                           f"(data file damaged or deleted); {REBUILD}")
    return arr
