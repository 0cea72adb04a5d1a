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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.core.decode import read_crop
from pipeline.core.io import sha256_file
from pipeline.core.views import View, random_view
from pipeline.data.datasets import PoseDataset
from pipeline.manifest.rows import RowQuery
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import input_size_of, load_checkpoint, model_from_checkpoint
from pipeline.model.losses import student_loss
from pipeline.model.network import LABEL_HEAD, ModelSpec
from pipeline.teacher.ensemble import ensemble_probs, validate_ensemble
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import Runtime
from pipeline.training.stage2 import StudentConfig, check_resume_labels, run_student

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineTeacher:
    """The teacher run online: its stage-1 checkpoint and the ``teacher_labels`` recipe (the
    ensemble (p, s), the view distribution, the crops per forward pass and bf16 on CUDA)."""

    checkpoint: str
    p: int
    s: int
    flip_prob: float = 0.5
    max_angle: float = 15.0
    chunk: int = 1024
    amp: bool = True

    def __post_init__(self) -> None:
        validate_ensemble(self.p, self.s)
        if not 0.0 <= self.flip_prob <= 1.0 or self.max_angle < 0:
            raise ValueError(f"online teacher: flip_prob {self.flip_prob!r} must be in [0, 1] and max_angle "
                             f"{self.max_angle!r} >= 0")

    @property
    def A(self) -> int:
        return validate_ensemble(self.p, self.s)


class FreshView:
    """``PoseDataset.view_fn``: a new view per sample per epoch, angle rounded to float32 like a
    stored view (so the teacher's warp is the one the job would do for that view). Picklable."""

    def __init__(self, flip_prob: float, max_angle: float) -> None:
        self.flip_prob, self.max_angle = flip_prob, max_angle

    def __call__(self, row: int, rng: np.random.Generator) -> View:
        v = random_view(rng, self.flip_prob, self.max_angle)
        return View(flip=v.flip, angle=float(np.float32(v.angle)))


class OnlineDataset(PoseDataset):
    """A :class:`PoseDataset` whose items also hold ``z``: uint8 [h+2p, w+2p, 3], the teacher's
    region Z of the drawn view; ``image`` is Z's center crop (the student's input, exactly the
    crop it would read without padding)."""

    pad: int = 0

    def read_view(self, i: int, view: View) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        p = self.pad
        z = read_crop(self.paths[i], self.boxes[i], self.size, view, pad=p, reduce=self.reduced_decode)
        h, w = self.size
        return np.ascontiguousarray(z[p : p + h, p : p + w]), {"z": torch.from_numpy(z)}


def online_dataset(boxes: pd.DataFrame, size: tuple[int, int], cfg: StudentConfig, teacher: OnlineTeacher,
                   split: str = "train") -> OnlineDataset:
    """The training rows the offline student would take (``split``, ``cfg.datasets``, the
    unlabelled rows when it distils), each with a fresh view and its region Z."""
    rows = RowQuery(split, cfg.datasets, unlabelled=cfg.unlabelled and cfg.kd_weight > 0)
    ds = OnlineDataset(boxes, rows, size, train=True, augment=cfg.augment(),
                       view_fn=FreshView(teacher.flip_prob, teacher.max_angle), seed=cfg.seed)
    ds.pad = teacher.p
    return ds


def check_teacher(state: Mapping[str, Any], checkpoint: str, spec: ModelSpec,
                  size: tuple[int, int] | None) -> tuple[int, int]:
    """The teacher's input size, after checking it has the student's bin-1 head grid and (if the
    student sets one) its input size; one line naming the value and what is expected."""
    tspec = ModelSpec.from_dict(state["model_spec"])
    if LABEL_HEAD not in tspec.grids:
        raise ValueError(f"online teacher {checkpoint!r} has no bin-1 head (heads: {list(tspec.grids)}); the student "
                         "distils bin-1 distributions: pass a stage-1 checkpoint")
    t, st = tspec.grids[LABEL_HEAD], spec.grids[LABEL_HEAD]
    if (t.size, t.theta, t.count) != (st.size, st.theta, st.count):
        raise ValueError(f"online teacher {checkpoint!r} has bins b={t.size:g} theta={t.theta:g} Q={t.count}, the "
                         f"student expects b={st.size:g} theta={st.theta:g} Q={st.count}")
    tsize = input_size_of(state, repr(checkpoint))
    if size is not None and tuple(size) != tuple(tsize):
        raise ValueError(f"online teacher {checkpoint!r} takes {tsize[0]}x{tsize[1]} inputs, train_student.input_size "
                         f"is {size[0]}x{size[1]}: set it to null (the teacher's) or {list(tsize)}")
    return tuple(int(v) for v in tsize)  # type: ignore[return-value]


def online_fns(spec: ModelSpec, teacher_model: torch.nn.Module, teacher: OnlineTeacher, size: tuple[int, int],
               ce_weight: float, kd_weight: float, device: torch.device):
    """Eq. 7 on the bin-1 head with the ensemble of the batch's own regions Z as the soft target."""
    grid = spec.grids[LABEL_HEAD]

    def loss_fn(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        target = ensemble_probs(teacher_model, batch["z"], size, teacher.p, teacher.s, head=LABEL_HEAD,
                                chunk=teacher.chunk, device=device, amp=teacher.amp)
        return student_loss(outputs[LABEL_HEAD], batch["target"], target, grid, ce_weight, kd_weight,
                            labelled=batch.get("labelled"))

    def predict_fn(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return grid.decode(outputs[LABEL_HEAD])

    return loss_fn, predict_fn


def online_provenance(teacher: OnlineTeacher, sha: str, state: Mapping[str, Any], size: tuple[int, int],
                      boxes_sha: str, seed: int) -> dict[str, Any]:
    """What the student's checkpoint records of its soft targets (the keys of a store's
    provenance, so that ``--resume`` refuses a switch between online and offline)."""
    spec = state["model_spec"]
    return {
        "teacher": {"sha256": sha, "kind": str(state["kind"]), "architecture": spec.get("backbone"), "head": LABEL_HEAD},
        "ensemble": {"p": teacher.p, "s": teacher.s, "A": teacher.A},
        "input": {"size": list(size)},
        "manifest": {"sha256": boxes_sha, "split": "train"},
        "views": {"online": True, "seed": seed, "flip_prob": teacher.flip_prob, "max_angle": teacher.max_angle},
        "encoding": None, "bins": None,
    }


def train_student_online(
    cfg: StudentConfig,
    teacher: OnlineTeacher,
    boxes_path: str | os.PathLike[str],
    paths: RunPaths,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 2 with the online teacher: train the student with eq. 7 on the teacher's ensemble of
    each sample's fresh view, evaluate on the test rows, write to ``paths``."""
    boxes = read_boxes(boxes_path)
    spec = cfg.spec()
    state = load_checkpoint(teacher.checkpoint, map_location="cpu")
    size = check_teacher(state, teacher.checkpoint, spec, cfg.size)
    train_set = online_dataset(boxes, size, cfg, teacher)
    provenance = online_provenance(teacher, sha256_file(teacher.checkpoint), state, size, sha256_file(boxes_path),
                                   cfg.seed)
    if resume:
        check_resume_labels(paths.out, provenance, teacher.checkpoint)
    model, _ = model_from_checkpoint(state)
    model.eval()
    for prm in model.parameters():
        prm.requires_grad_(False)

    def make_fns(rt: Runtime):
        net = model.to(rt.device)
        if rt.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        return online_fns(spec, net, teacher, size, cfg.ce_weight, cfg.kd_weight, rt.device)

    per_epoch = len(train_set) * teacher.A
    log.info("online teacher %s: A=%d crops per sample, %d teacher passes per epoch", teacher.checkpoint, teacher.A,
             per_epoch)
    return run_student(
        cfg, boxes, size, train_set, make_fns, paths, resume=resume, progress=progress,
        extra_state={"labels": {"path": str(teacher.checkpoint), "provenance": provenance}},
        teacher={"mode": "online", "encoding": None, "views": None, "network_passes": per_epoch * cfg.epochs},
    )


__all__ = ["FreshView", "OnlineDataset", "OnlineTeacher", "check_teacher", "online_dataset", "online_fns",
           "online_provenance", "train_student_online"]
