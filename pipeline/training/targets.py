"""Where a student's soft targets come from: one interface, four sources (docs/design.md §6).

The student (:func:`pipeline.training.stage2.train_student`) has one path: it asks its
:class:`SoftTargets` for a :class:`TargetPlan` — the input size, how each sample's view is drawn,
the provenance it records, and the function that gives a batch's target distributions — and
trains eq. 7 on it. The sources:

- :class:`StoreTargets`: the cached label store (``hpekd teacher-labels``), its stored views
  replayed (:class:`ViewReplay`);
- :class:`pipeline.training.online.OnlineTargets`: the teacher's ensemble run at every step on a
  fresh view;
- :class:`GaussianTargets`: no teacher; a discretised Gaussian of width ``sigma`` centred on the
  (view-corrected) label — the teacher-free soft-label control;
- :class:`NoTargets`: no soft target at all (``kd_weight`` 0): the student without distillation.

The two teacher-free sources draw the store's views without reading a store
(:class:`KeyedViews`: the same keyed views, :mod:`pipeline.core.views`), so a control differs
from the distilled student by its target alone.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.core.bins import BinGrid
from pipeline.core.io import sha256_file
from pipeline.core.views import View, draw_view, view_from_row
from pipeline.manifest.rows import row_ids
from pipeline.model.checkpoint import load_checkpoint
from pipeline.model.network import LABEL_HEAD, ModelSpec
from pipeline.teacher.labelread import Mismatch, TeacherLabels, compare_with_boxes, load_teacher_labels
from pipeline.teacher.provenance import (
    Bins,
    Input,
    Manifest,
    Provenance,
    Requirements,
    Views,
    check_targets,
)

# (outputs' device, batch) -> [B, 3, Q] target distributions, or None (no distillation)
TargetFn = Callable[[torch.device, Mapping[str, torch.Tensor]], "torch.Tensor | None"]
REBUILD_LABELS = "rebuild the labels with `hpekd teacher-labels` for these inputs (or pass the matching files)"


@dataclass(frozen=True)
class TargetPlan:
    """What a student needs of its soft-target source, after the source checked itself."""

    size: tuple[int, int]  # input size of the student
    view_fn: Any  # PoseDataset.view_fn: how each sample's view is drawn (picklable)
    pad: int | None  # None: plain crops; p: each item also holds the teacher's region Z (online)
    provenance: Provenance  # what the checkpoint records (``--resume`` compares it)
    make_target: Callable[[Any], TargetFn]  # runtime -> the batch target function
    info: dict[str, Any]  # how the targets are made, for the metrics JSON
    split: str = "train"  # the boxes table's split the student trains on


class SoftTargets(ABC):
    """A soft-target source (see the module docstring)."""

    kind: str = ""
    distils: bool = True  # False: the student must have kd_weight 0
    has_teacher: bool = True  # False: no target for an unlabelled row (the student leaves them out)

    @abstractmethod
    def plan(self, boxes: pd.DataFrame, boxes_path: str | os.PathLike[str], req: Requirements,
             seed: int) -> TargetPlan:
        """Check the source against the boxes table and the student's requirements, then plan."""

    def describe(self) -> str:
        """The source in words, for messages."""
        return self.kind

    def describe_path(self) -> str:
        """What the checkpoint records as the source's path (a store, a checkpoint or the kind)."""
        return self.kind


# ----------------------------------------------------------------------------- views


class ViewReplay:
    """``PoseDataset.view_fn``: a uniformly drawn stored view per sample per epoch; ``view_id`` is
    the store's view index (the soft target's). Picklable, so DataLoader workers get it."""

    def __init__(self, labels: TeacherLabels, n_boxes_rows: int):
        self.views = labels.views
        self.n_views = labels.n_views
        self.pos = labels.positions(n_boxes_rows)

    def __call__(self, row: int, rng: np.random.Generator) -> tuple[View, int]:
        p = int(self.pos[row])
        if p < 0:
            raise ValueError(f"boxes row {row} has no teacher labels in the store")
        v = int(rng.integers(self.n_views))
        return view_from_row(self.views[p, v]), v


class KeyedViews:
    """``PoseDataset.view_fn`` of the teacher-free students: view ``v`` (uniform in ``[0, V)``) of
    the sample, keyed by (seed, sample_id, v) as the teacher job draws it — the store's views,
    without a store. Draws from the sample's generator exactly as :class:`ViewReplay`."""

    def __init__(self, boxes: pd.DataFrame, views: Views):
        if views.V is None or views.V < 1:
            raise ValueError(f"views V={views.V!r} must be >= 1")
        self.ids = np.array(row_ids(boxes, np.arange(len(boxes))), dtype=object)
        self.n_views, self.seed = int(views.V), int(views.seed)
        self.flip_prob, self.max_angle = float(views.flip_prob or 0.0), float(views.max_angle or 0.0)

    def __call__(self, row: int, rng: np.random.Generator) -> tuple[View, int]:
        v = int(rng.integers(self.n_views))
        return draw_view(str(self.ids[row]), v, self.seed, self.flip_prob, self.max_angle), v


# ----------------------------------------------------------------------------- the label store


class TeacherTable:
    """Soft-target lookup for a batch: the store's encoded arrays at ``[pos[row], view]``, moved
    to the device and decoded there → [B, 3, Q]. Holds the store encoded (compact in RAM too)."""

    def __init__(self, labels: TeacherLabels, n_boxes_rows: int):
        self.encoding = labels.encoding
        self.parts = {k: torch.from_numpy(a) for k, a in labels.parts.items()}  # shares memory with numpy
        self.pos = torch.from_numpy(labels.positions(n_boxes_rows))

    def __call__(self, rows: torch.Tensor, views: torch.Tensor, device: torch.device) -> torch.Tensor:
        p = self.pos[rows.cpu()]
        if (p < 0).any():
            raise ValueError(f"boxes row {int(rows.cpu()[p < 0][0])} has no teacher labels in the store")
        v = views.cpu()
        if (v < 0).any():
            raise ValueError("batch without view ids: the dataset must replay the stored views")
        return self.encoding.decode_torch({k: a[p, v].to(device, non_blocking=True) for k, a in self.parts.items()})


def _table_error(path: str, m: Mismatch, boxes_path: str | os.PathLike[str]) -> ValueError:
    """The student's words for a store that does not match its boxes table."""
    what = {
        "manifest.sha256": (m.store, m.table, f"the store was made from another boxes table than {str(boxes_path)!r}; "
                            + REBUILD_LABELS),
        "sample_id": ((f"{m.store} rows", f"{m.table} train rows with status ok", REBUILD_LABELS) if m.first is None
                      else (f"row {m.first} = {m.store}", f"row {m.first} = {m.table}",
                            f"{m.count} row(s) differ; {REBUILD_LABELS}")),
    }.get(m.field, (m.store, m.table, REBUILD_LABELS))
    return ValueError(f"label store {path!r} does not match this run: {m.field} differs "
                      f"(store {what[0]!r}, here {what[1]!r}); {what[2]}")


@dataclass
class StoreTargets(SoftTargets):
    """The cached teacher labels of a store; ``teacher``: also refuse a store made by another
    checkpoint than this one."""

    path: str
    max_gb: float = 16.0
    teacher: str | None = None
    kind = "store"

    def describe(self) -> str:
        return f"label store {self.path!r}"

    def describe_path(self) -> str:
        return str(self.path)

    def plan(self, boxes, boxes_path, req, seed):
        labels = load_teacher_labels(self.path, self.max_gb)
        found = compare_with_boxes(labels.attrs, labels.sample_ids, labels.rows, sha256_file(boxes_path), boxes)
        if found:
            raise _table_error(self.path, found[0], boxes_path)
        prov = Provenance.from_attrs(labels.attrs)
        if self.teacher is not None:  # a checkpoint, read as data and checked before its sha256 meets the store's
            load_checkpoint(self.teacher)
            req = Requirements(req.bins, req.input_size, sha256_file(self.teacher))
        check_targets(prov, req, f"label store {self.path!r}", REBUILD_LABELS)
        if labels.n_bins != req.bins.Q:
            raise ValueError(f"label store {self.path!r} holds distributions of {labels.n_bins} bins, the student's "
                             f"head has {req.bins.Q}; {REBUILD_LABELS}")
        size = req.input_size or tuple(int(v) for v in prov.input.size)  # type: ignore[union-attr]
        table = TeacherTable(labels, len(boxes))
        ens = prov.ensemble
        return TargetPlan(
            size=size, view_fn=ViewReplay(labels, len(boxes)), pad=None, provenance=prov,  # type: ignore[arg-type]
            make_target=lambda rt: (lambda device, batch: table(batch["index"], batch["view_id"], device)),
            info={"mode": "offline", "encoding": labels.encoding.name, "views": labels.n_views,
                  "network_passes": len(labels.rows) * labels.n_views * (ens.A if ens else 0)},
            split=labels.split,
        )


# ----------------------------------------------------------------------------- teacher-free sources


def _free_provenance(boxes_path: str | os.PathLike[str], size: tuple[int, int], views: Views,
                     target: dict[str, Any], bins: Bins | None) -> Provenance:
    return Provenance(bins=bins, input=Input([int(size[0]), int(size[1])]),
                      manifest=Manifest(sha256_file(boxes_path), split="train"), views=views, target=target)


def gaussian_targets(angles: torch.Tensor, grid: BinGrid, sigma: float) -> torch.Tensor:
    """[B, 3, Q] discretised Gaussians: bin q gets Φ((hi_q − a)/σ) − Φ((lo_q − a)/σ) of the
    normal N(a, σ²) around each angle ``a`` [B, 3] (degrees), renormalised over the bins (the
    mass beyond ±θ is dropped). A NaN angle (an unlabelled row) gives a uniform row; the student
    never uses it (no unlabelled rows without a teacher)."""
    if not sigma > 0:
        raise ValueError(f"soft_label_sigma {sigma!r} must be > 0 degrees")
    edges = grid.low + grid.size * torch.arange(grid.count + 1, dtype=torch.float64, device=angles.device)
    z = (edges.view(1, 1, -1) - angles.double().unsqueeze(-1)) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + torch.erf(z))
    mass = (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0)
    total = mass.sum(-1, keepdim=True)
    out = torch.where(total > 0, mass / total.clamp_min(1e-300), torch.full_like(mass, 1.0 / grid.count))
    return out.float()


@dataclass
class GaussianTargets(SoftTargets):
    """The teacher-free soft label: a Gaussian of ``sigma`` degrees around the label, with the
    store's view distribution (``views``: the ``teacher_labels`` recipe)."""

    sigma: float
    views: Views
    input_size: tuple[int, int]
    kind = "gaussian"
    has_teacher = False

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"train_student.soft_label_sigma {self.sigma!r} must be > 0 degrees")

    def describe(self) -> str:
        return f"Gaussian soft labels (sigma {self.sigma:g}°)"

    def plan(self, boxes, boxes_path, req, seed):
        size = req.input_size or self.input_size
        grid = BinGrid(req.bins.b, req.bins.theta)
        target = {"kind": "gaussian", "sigma": float(self.sigma)}
        return TargetPlan(
            size=size, view_fn=KeyedViews(boxes, self.views), pad=None,
            provenance=_free_provenance(boxes_path, size, self.views, target, req.bins),
            make_target=lambda rt: (lambda device, batch: gaussian_targets(batch["target"].to(device), grid,
                                                                           self.sigma)),
            info={"mode": "gaussian", "sigma": float(self.sigma), "views": self.views.V, "network_passes": 0},
        )


@dataclass
class NoTargets(SoftTargets):
    """No soft target: the student without distillation (eq. 7 with kd_weight 0), with the
    store's view distribution (``views``) so that it differs from the distilled student by its
    target alone."""

    views: Views
    input_size: tuple[int, int]
    kind = "none"
    distils = False
    has_teacher = False

    def describe(self) -> str:
        return "no soft targets (kd_weight 0)"

    def plan(self, boxes, boxes_path, req, seed):
        size = req.input_size or self.input_size
        return TargetPlan(
            size=size, view_fn=KeyedViews(boxes, self.views), pad=None,
            provenance=_free_provenance(boxes_path, size, self.views, {"kind": "none"}, None),
            make_target=lambda rt: (lambda device, batch: None),
            info={"mode": "none", "views": self.views.V, "network_passes": 0},
        )


def student_bins(spec: ModelSpec) -> Bins:
    grid = spec.grids[LABEL_HEAD]
    return Bins(grid.size, grid.theta, grid.count)


__all__ = [
    "GaussianTargets", "KeyedViews", "NoTargets", "SoftTargets", "StoreTargets", "TargetFn", "TargetPlan",
    "TeacherTable", "ViewReplay", "gaussian_targets", "student_bins",
]
