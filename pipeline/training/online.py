"""The online teacher: stage 2 with the convolutional ensemble run at every step instead of read
from the label store (docs/design.md §6, "Offline and online teacher").

For every sample of every epoch the student draws a fresh view (flip with ``flip_prob``, rotation
uniform in ±``max_angle``, from the sample's generator of (seed, epoch, row), the angle rounded to
float32 as a stored view is), builds the teacher's padded region Z for it — the same
:func:`pipeline.core.decode.read_crops` call as the teacher job — and trains on Z's center crop
(with fresh photometric augmentation, as offline). The teacher network runs eq. 5–6 on Z
(:func:`pipeline.teacher.ensemble.ensemble_probs`, the job's code) and eq. 7 uses that
distribution. This is the label store with a new view per sample per epoch: the reference the
cache is measured against (``benchmarks/cache_tradeoff.py``). It costs A teacher passes per sample
per epoch, against N · V · A once for the store.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.core.io import sha256_file
from pipeline.core.views import View, random_view
from pipeline.model.checkpoint import input_size_of, load_checkpoint, model_from_checkpoint
from pipeline.model.network import LABEL_HEAD, ModelSpec
from pipeline.teacher.ensemble import ensemble_probs
from pipeline.teacher.job import TeacherLabelsConfig
from pipeline.teacher.provenance import (
    Bins,
    Ensemble,
    Input,
    Manifest,
    Provenance,
    Requirements,
    TeacherInfo,
    Views,
    check_targets,
)
from pipeline.training.runtime import Runtime
from pipeline.training.targets import SoftTargets, TargetPlan

log = logging.getLogger(__name__)

PASS_A_STAGE1 = "pass a stage-1 checkpoint with the student's bin-1 grid and input size"


@dataclass(frozen=True)
class OnlineTeacher:
    """The teacher run online: its stage-1 checkpoint and the ``teacher_labels`` recipe (the
    ensemble (p, s), the view distribution, the crops per forward pass and bf16 on CUDA) — the
    one record of that recipe, :class:`~pipeline.teacher.job.TeacherLabelsConfig`, which checks it."""

    checkpoint: str
    recipe: TeacherLabelsConfig

    @classmethod
    def from_config(cls, checkpoint: str | os.PathLike[str], recipe: TeacherLabelsConfig) -> OnlineTeacher:
        return cls(str(checkpoint), recipe)

    @property
    def A(self) -> int:
        return self.recipe.A


class FreshView:
    """``PoseDataset.view_fn``: a new view per sample per epoch, angle rounded to float32 like a
    stored view (so the teacher's warp is the one the job would do for that view). Picklable."""

    def __init__(self, flip_prob: float, max_angle: float) -> None:
        self.flip_prob, self.max_angle = flip_prob, max_angle

    def __call__(self, row: int, rng: np.random.Generator) -> View:
        v = random_view(rng, self.flip_prob, self.max_angle)
        return View(flip=v.flip, angle=float(np.float32(v.angle)))


def teacher_provenance(teacher: OnlineTeacher, state: dict[str, Any], boxes_path: str | os.PathLike[str],
                       seed: int) -> Provenance:
    """The online teacher's provenance: the checkpoint's bin-1 grid and input size, the recipe,
    a fresh view per sample per epoch (``views.online``)."""
    spec = ModelSpec.from_dict(state["model_spec"])
    if LABEL_HEAD not in spec.grids:
        raise ValueError(f"online teacher {teacher.checkpoint!r} has no bin-1 head (heads: {list(spec.grids)}); the "
                         "student distils bin-1 distributions: pass a stage-1 checkpoint")
    grid, r = spec.grids[LABEL_HEAD], teacher.recipe
    size = input_size_of(state, repr(teacher.checkpoint))
    return Provenance(
        teacher=TeacherInfo(sha256_file(teacher.checkpoint), str(state["kind"]), dict(state["model_spec"]),
                            state["model_spec"].get("backbone"), LABEL_HEAD),
        bins=Bins(grid.size, grid.theta, grid.count), ensemble=Ensemble(r.p, r.s, r.A),
        input=Input([int(size[0]), int(size[1])]), manifest=Manifest(sha256_file(boxes_path), split=r.split),
        views=Views(seed, flip_prob=r.flip_prob, max_angle=r.max_angle, online=True), target={"kind": "online"},
    )


class OnlineTargets(SoftTargets):
    """Soft targets from the teacher's ensemble run on each batch's own regions Z."""

    kind = "online"

    def __init__(self, teacher: OnlineTeacher) -> None:
        self.teacher = teacher

    def describe(self) -> str:
        return f"online teacher {self.teacher.checkpoint!r}"

    def describe_path(self) -> str:
        return str(self.teacher.checkpoint)

    def plan(self, boxes: pd.DataFrame, boxes_path, req: Requirements, seed: int) -> TargetPlan:
        t, r = self.teacher, self.teacher.recipe
        state = load_checkpoint(t.checkpoint, map_location="cpu")
        prov = teacher_provenance(t, state, boxes_path, seed)
        check_targets(prov, req, f"online teacher {t.checkpoint!r}", PASS_A_STAGE1, theirs="teacher")
        size = tuple(int(v) for v in prov.input.size)  # type: ignore[union-attr]
        model, _ = model_from_checkpoint(state)
        model.eval()
        for prm in model.parameters():
            prm.requires_grad_(False)

        def make_target(rt: Runtime):
            net = model.to(rt.device)
            if rt.device.type == "cuda":
                net = net.to(memory_format=torch.channels_last)

            def target(device: torch.device, batch) -> torch.Tensor:
                return ensemble_probs(net, batch["z"], size, r.p, r.s, head=LABEL_HEAD, chunk=r.chunk,
                                      device=rt.device, amp=r.amp)

            return target

        log.info("online teacher %s: A=%d crops per sample per epoch", t.checkpoint, t.A)
        return TargetPlan(size=size, view_fn=FreshView(r.flip_prob, r.max_angle), pad=r.p,  # type: ignore[arg-type]
                          provenance=prov, make_target=make_target,
                          info={"mode": "online", "encoding": None, "views": None, "passes_per_sample": t.A})


__all__ = ["FreshView", "OnlineTargets", "OnlineTeacher", "teacher_provenance"]
