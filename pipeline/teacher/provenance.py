"""The one provenance record of a student's soft targets (docs/design.md §6, "Provenance").

A label store's group attributes, the record a student checkpoint keeps of what it learnt from,
the online teacher's description of itself and ``hpekd labels convert``'s output are all a
:class:`Provenance`: built here, written with :meth:`Provenance.to_attrs`, read back with
:meth:`Provenance.from_attrs`, compared with :meth:`Provenance.diff` (one list of identity fields,
:data:`IDENTITY_FIELDS`) and checked against what a student needs with :func:`check_targets`
(one checker). Everything is plain JSON data: the same inputs give the same bytes (no timestamp,
host or absolute path; ``package`` is informative and not part of the identity).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.angles import ANGLES
from pipeline.core.images import IMAGENET_MEAN, IMAGENET_STD

FORMAT = "hpekd-teacher-labels"
FORMAT_VERSION = 3  # v2: per-shard digests, uint8 sample ids, boxes_row; v3: the encoding attribute

# the fields that define *what* a store holds: a resume must match them exactly
IDENTITY_FIELDS = ("format", "format_version", "teacher", "bins", "ensemble", "input", "manifest", "views",
                   "layout", "encoding")
# what a student checkpoint records of its soft targets: the identity without the storage details
# (another layout or format version of the same distributions is the same target); ``target`` names
# a source that is not a store (online, gaussian, none)
RECORD_FIELDS = tuple(f for f in IDENTITY_FIELDS if f not in ("format", "format_version", "layout")) + ("target",)

NORMALIZATION = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": "1/255", "channels": "RGB"}


def _plain(obj: Any) -> Any:
    """A section as JSON data: dataclass fields in order, ``None`` fields left out."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _section(cls: type, data: Any) -> Any:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError(f"provenance section {cls.__name__.lower()} must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TeacherInfo:
    sha256: str
    kind: str
    model_spec: dict[str, Any] | None = None
    architecture: str | None = None
    head: str | None = None


@dataclass(frozen=True)
class Bins:
    b: float
    theta: float
    Q: int


@dataclass(frozen=True)
class Ensemble:
    p: int
    s: int
    A: int


@dataclass(frozen=True)
class Input:
    size: list[int]
    normalization: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    sha256: str
    name: str | None = None
    split: str | None = None
    status: str | None = None
    labelled: int | None = None
    unlabelled: int | None = None


@dataclass(frozen=True)
class Views:
    seed: int
    V: int | None = None  # None: a fresh view per sample per epoch (online)
    flip_prob: float | None = None
    max_angle: float | None = None
    view0: str | None = None
    columns: list[str] | None = None
    online: bool | None = None


SECTIONS: dict[str, type] = {"teacher": TeacherInfo, "bins": Bins, "ensemble": Ensemble, "input": Input,
                             "manifest": Manifest, "views": Views}


@dataclass(frozen=True)
class Provenance:
    """Where a set of soft targets comes from. Sections a source does not have are ``None``
    (a Gaussian target has no teacher; an online teacher has no layout or encoding)."""

    teacher: TeacherInfo | None = None
    bins: Bins | None = None
    ensemble: Ensemble | None = None
    input: Input | None = None
    manifest: Manifest | None = None
    views: Views | None = None
    layout: dict[str, int] | None = None
    encoding: dict[str, Any] | None = None
    target: dict[str, Any] | None = None  # a source that is not a store: {"kind": "online" | "gaussian" | "none", ...}
    extra: dict[str, Any] = field(default_factory=dict)  # other attributes (angles, package, content), kept as read

    def to_attrs(self) -> dict[str, Any]:
        """A store's group attributes (JSON; the key order is the store's)."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for name in ("teacher", "bins", "ensemble", "input", "manifest", "views", "layout", "encoding", "target"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _plain(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        """The record of a store's attributes (or of a checkpoint's record)."""
        known = set(IDENTITY_FIELDS) | {"target"}
        return cls(**{k: _section(t, attrs.get(k)) for k, t in SECTIONS.items()},
                   layout=attrs.get("layout"), encoding=attrs.get("encoding"), target=attrs.get("target"),
                   extra={k: v for k, v in attrs.items() if k not in known})

    def record(self) -> dict[str, Any]:
        """What a student checkpoint keeps (:data:`RECORD_FIELDS`), as JSON data."""
        attrs = self.to_attrs()
        return json.loads(json.dumps({k: attrs.get(k) for k in RECORD_FIELDS if k != "target" or k in attrs}))

    def diff(self, other: Provenance | Mapping[str, Any], fields: tuple[str, ...] = IDENTITY_FIELDS) -> list[str]:
        """The fields that differ, in words: ``teacher.sha256 ('ab…' vs 'cd…')``."""
        a = self.to_attrs()
        b = other.to_attrs() if isinstance(other, Provenance) else dict(other)
        return diff_attrs(a, b, fields)


def diff_attrs(a: Mapping[str, Any], b: Mapping[str, Any], fields: tuple[str, ...] = IDENTITY_FIELDS) -> list[str]:
    """Dotted names (with both values) of the ``fields`` that differ between two attribute sets."""
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


def store_provenance(
    *, teacher: TeacherInfo, bins: Bins, ensemble: Ensemble, input_size: tuple[int, int], manifest: Manifest,
    views: Views, layout: Mapping[str, int], encoding: Mapping[str, Any], package: str,
) -> Provenance:
    """The provenance of a label store made by the teacher job (the store's group attributes)."""
    return Provenance(
        teacher=teacher, bins=bins, ensemble=ensemble,
        input=Input([int(input_size[0]), int(input_size[1])], dict(NORMALIZATION)),
        manifest=manifest, views=views, layout=dict(layout), encoding=dict(encoding),
        extra={"angles": list(ANGLES), "package": {"name": "hpekd", "version": package}},
    )


# ----------------------------------------------------------------------------- the one checker


@dataclass(frozen=True)
class Requirements:
    """What a student needs of its soft targets: its bin-1 head's grid, its input size (``None``:
    take the source's), ImageNet normalisation, and optionally one teacher checkpoint."""

    bins: Bins
    input_size: tuple[int, int] | None = None
    teacher_sha256: str | None = None


def check_targets(prov: Provenance, req: Requirements, source: str, hint: str, theirs: str = "store") -> None:
    """Refuse soft targets made for another head, input or teacher: one ``ValueError`` naming the
    first field that differs, with both values (``theirs``: what the source's value is called) and
    ``hint`` (what to do)."""

    def refuse(name: str, there: Any, here: Any, why: str = hint) -> ValueError:
        return ValueError(f"{source} does not match this run: {name} differs ({theirs} {there!r}, here {here!r}); {why}")

    bins = prov.bins
    for key in ("b", "theta", "Q"):
        there, here = (getattr(bins, key) if bins else None), getattr(req.bins, key)
        if there is None or float(there) != float(here):
            raise refuse(f"bins.{key}", there, here, "the student's head is bin size 1 over ±θ; " + hint)
    size = prov.input.size if prov.input else None
    if req.input_size is not None and (size is None or tuple(size) != tuple(req.input_size)):
        raise refuse("input.size", size, list(req.input_size),
                     f"set train_student.input_size to the {theirs}'s (or null) or remake the {theirs} at this size")
    norm = (prov.input.normalization if prov.input else None) or {}
    if norm and (list(norm.get("mean", IMAGENET_MEAN)) != list(IMAGENET_MEAN)
                 or list(norm.get("std", IMAGENET_STD)) != list(IMAGENET_STD)):
        raise refuse("input.normalization", norm, {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    if req.teacher_sha256 is not None:
        there = prov.teacher.sha256 if prov.teacher else None
        if there != req.teacher_sha256:
            raise refuse("teacher.sha256", there, req.teacher_sha256, "the targets were made by another teacher; " + hint)


__all__ = [
    "FORMAT", "FORMAT_VERSION", "IDENTITY_FIELDS", "NORMALIZATION", "RECORD_FIELDS", "Bins", "Ensemble", "Input",
    "Manifest", "Provenance", "Requirements", "TeacherInfo", "Views", "check_targets", "diff_attrs",
    "store_provenance",
]
