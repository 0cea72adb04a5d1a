"""Stage 2: a student with one RvC head (bin size 1) trained with eq. 7 on soft targets.

One path for every soft-target source (:mod:`pipeline.training.targets`): the cached label store
(the paper's student), the teacher run online, a teacher-free Gaussian around the label, or none
(the control without distillation). For every sample of every epoch the student

1. draws a view as its source says (a stored view replayed, a fresh view, or the store's keyed
   views without a store), from the sample's generator
   :func:`pipeline.data.transforms.sample_rng` of ``(seed, epoch, row)``;
2. crops the image under that view — the same :func:`pipeline.core.geometry.crop` that built
   the teacher's region Z, so the student's input is the center crop of Z — and corrects the
   ground-truth pose with :meth:`View.pose`; adds fresh photometric augmentation;
3. minimises eq. 7 (:func:`pipeline.model.losses.student_loss`):
   ``(ce_weight · Σ CE(gt, out) + kd_weight · Σ KL(target ‖ out)) / 2``; an unlabelled row
   (manifest ``labelled = false``) has no CE part, so it is learnt from a teacher alone and is
   left out by the teacher-free students.

Training runs on the shared engine :func:`pipeline.training.engine.fit` (bf16 AMP + channels-last on
CUDA, torchrun DDP, exact resume, DVC metrics), like stage 1. Before training the source checks
itself against the boxes table and the student (:func:`pipeline.teacher.provenance.check_targets`);
the checkpoint records the source's provenance and ``--resume`` refuses another.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.core.config import OPTIONAL
from pipeline.core.decode import read_crop
from pipeline.core.geometry import crop
from pipeline.core.views import View
from pipeline.data.datasets import PoseDataset
from pipeline.data.transforms import AugmentConfig
from pipeline.manifest.rows import RowQuery, has_rows
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_backbone_weights, load_checkpoint
from pipeline.model.losses import student_loss
from pipeline.model.network import LABEL_BIN, LABEL_HEAD, HeadPoseNet, ModelSpec
from pipeline.teacher.provenance import RECORD_FIELDS, Requirements, diff_attrs
from pipeline.training.config import TrainConfig, input_hw
from pipeline.training.engine import TrainingRun, fit
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import Runtime, set_seed, training_runtime
from pipeline.training.targets import SoftTargets, TargetFn, TargetPlan, student_bins

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class StudentConfig(TrainConfig):
    """params.yaml section ``train_student`` (unknown keys are an error).

    The backbone usually comes from the command line (``--backbone``, one DVC stage per
    entry of the ``students`` list); ``input_size: null`` means "the store's input size".
    """

    backbone: str = field(default="resnet18", metadata=OPTIONAL)  # set by --backbone (one stage per student)
    pretrained: bool  # torchvision ImageNet weights (downloads into TORCH_HOME)
    weights: str | None  # local backbone state dict (torchvision layout) or an hpekd checkpoint
    input_size: int | tuple[int, int] | None  # must equal the store's (null: take it from the store)
    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    scheduler: str
    ce_weight: float  # eq. 7 weight of the ground-truth cross-entropy
    kd_weight: float  # weight of the distillation (KL) term; 0 = the no-KD control student
    workers: int
    seed: int
    device: str
    eval_every: int
    feature_norm: bool  # BatchNorm1d on the pooled features before the heads (docs/design.md §4)
    head_lr_mult: float  # lr multiplier of the RvC heads (trunk and regression head: lr)
    photometric: bool  # fresh albumentations each epoch (the views come from the store)
    max_label_memory_gb: float  # refuse stores larger than this (they are loaded whole)
    soft_label_sigma: float  # width (degrees) of the teacher-free Gaussian soft label (--gaussian)
    datasets: tuple[str, ...]  # train only on these `dataset` values (empty = all labelled rows)
    unlabelled: bool  # also the store's unlabelled rows (KD alone); false = the labelled rows only

    def __post_init__(self) -> None:
        self._check_backbone()
        if not self.ce_weight >= 0:
            raise ValueError(f"ce_weight {self.ce_weight!r} must be >= 0")
        if not self.kd_weight >= 0 or (self.kd_weight == 0 and self.ce_weight == 0):
            raise ValueError(f"kd_weight {self.kd_weight!r} must be >= 0, and not 0 together with ce_weight")
        if not self.soft_label_sigma > 0:
            raise ValueError(f"train_student.soft_label_sigma {self.soft_label_sigma!r} must be > 0 degrees")
        if not self.max_label_memory_gb > 0:
            raise ValueError(f"max_label_memory_gb {self.max_label_memory_gb!r} must be > 0")
        self.size  # validates input_size
        self.engine()

    @property
    def size(self) -> tuple[int, int] | None:
        return input_hw(self.input_size, allow_null=True)

    def spec(self) -> ModelSpec:
        return ModelSpec(self.backbone, bin_sizes=(LABEL_BIN,), regression=False, feature_norm=self.feature_norm)

    def augment(self) -> AugmentConfig:
        # the geometric part is replayed from the store; only the photometric flag matters here
        return AugmentConfig(flip_p=0.0, max_angle=0.0, photometric=self.photometric)


# ----------------------------------------------------------------------------- data


class StudentDataset(PoseDataset):
    """The student's training rows, each with the view its soft-target source draws
    (``view_fn``). With ``pad`` set (the online teacher) an item also holds ``z``: uint8
    [h+2p, w+2p, 3], the teacher's region Z of the view, and ``image`` is Z's center crop
    (exactly the crop read without padding)."""

    pad: int | None = None

    def read_view(self, i: int, view: View) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        if self.pad is None:
            return super().read_view(i, view)
        p = self.pad
        z = read_crop(self.paths[i], self.boxes[i], self.size, view, pad=p, reduce=self.reduced_decode)
        h, w = self.size
        return np.ascontiguousarray(z[p : p + h, p : p + w]), {"z": torch.from_numpy(z)}


def student_dataset(boxes: pd.DataFrame, plan: TargetPlan, cfg: StudentConfig, targets: SoftTargets,
                    train: bool = True) -> StudentDataset:
    """The training rows (``cfg.datasets``; the unlabelled rows too when a teacher gives them a
    target and ``cfg.unlabelled`` is on), drawn as ``plan`` says (``train=False``: no photometric)."""
    take_unlabelled = cfg.unlabelled and cfg.kd_weight > 0 and targets.has_teacher
    ds = StudentDataset(boxes, RowQuery(plan.split, cfg.datasets, unlabelled=take_unlabelled), plan.size, train=train,
                        augment=cfg.augment(), view_fn=plan.view_fn, seed=cfg.seed)
    ds.pad = plan.pad
    return ds


def teacher_input(image: np.ndarray, box: Sequence[float], size: tuple[int, int], view: View, p: int) -> np.ndarray:
    """The teacher's view of a sample without ensemble offset: the center crop of Z (docs/design.md §5)."""
    h, w = size
    return crop(image, box, size, pad=p, view=view)[p : p + h, p : p + w]


def student_fns(spec: ModelSpec, target_fn: TargetFn, ce_weight: float, kd_weight: float = 1.0):
    """Eq. 7 loss on the bin-1 head with the batch's soft target (``None``: no KL term), and eq. 2
    prediction."""
    grid = spec.grids[LABEL_HEAD]

    def loss_fn(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        logits = outputs[LABEL_HEAD]
        return student_loss(logits, batch["target"], target_fn(logits.device, batch), grid, ce_weight, kd_weight,
                            labelled=batch.get("labelled"))

    def predict_fn(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return grid.decode(outputs[LABEL_HEAD])

    return loss_fn, predict_fn


def row_counts(train_set: PoseDataset) -> dict[str, int]:
    """Labelled / unlabelled rows the student trains on, and unlabelled rows it leaves out."""
    n_unl = int((~train_set.labelled).sum())
    return {"labelled": len(train_set) - n_unl, "unlabelled": n_unl,
            "unlabelled_left_out": int(train_set.unlabelled_left_out)}


# ----------------------------------------------------------------------------- stage 2


def check_resume(out: str | os.PathLike[str], record: Mapping[str, Any], source: str) -> None:
    """``--resume`` continues a student only on the soft targets it began with: a checkpoint
    whose recorded provenance differs (another teacher, views, encoding or source) is refused."""
    if not os.path.isfile(out):
        return
    old = ((load_checkpoint(out, map_location="cpu").get("labels") or {}).get("provenance")) or {}
    diff = diff_attrs(old, record, RECORD_FIELDS)
    if diff:
        raise ValueError(
            f"cannot resume {str(out)!r} on {source}: the checkpoint was trained on other soft "
            f"labels ({'; '.join(diff[:3])}); train from scratch (delete the checkpoint or drop --resume)"
        )


def train_student(
    cfg: StudentConfig,
    targets: SoftTargets,
    boxes_path: str | os.PathLike[str],
    paths: RunPaths,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 2, one path for every soft-target source: check the source against the boxes table
    and the student, train the student with eq. 7 on the training rows (drawn as the source
    says) and evaluate on the boxes table's ``test`` rows, writing to ``paths``."""
    if not targets.distils and cfg.kd_weight > 0:
        raise ValueError(f"train_student.kd_weight {cfg.kd_weight!r}: {targets.describe()} has nothing to distil; "
                         "use kd_weight 0, or give the student soft targets (--labels, --gaussian or a teacher)")
    boxes = read_boxes(boxes_path)
    spec = cfg.spec()
    plan = targets.plan(boxes, boxes_path, Requirements(student_bins(spec), cfg.size), cfg.seed)
    train_set = student_dataset(boxes, plan, cfg, targets)
    record = plan.provenance.record()
    if resume:
        check_resume(paths.out, record, targets.describe())
    info = dict(plan.info)
    if "passes_per_sample" in info:  # a teacher run at every step: A passes per sample per epoch
        info["network_passes"] = len(train_set) * info.pop("passes_per_sample") * cfg.epochs
    log.info("%s: %d teacher-network passes", targets.describe(), info.get("network_passes", 0))

    def make_fns(rt: Runtime):
        return student_fns(spec, plan.make_target(rt), cfg.ce_weight, cfg.kd_weight)

    return run_student(cfg, boxes, plan.size, train_set, make_fns, paths, resume=resume, progress=progress,
                       extra_state={"labels": {"path": targets.describe_path(), "provenance": record}},
                       teacher=info)


# 10 parameters: the run's inputs (config, table, size, training set, loss factory, paths), then
# four keyword-only settings each caller names (the offline and the online student)
def run_student(
    cfg: StudentConfig,
    boxes: pd.DataFrame,
    size: tuple[int, int],
    train_set: PoseDataset,
    make_fns: Any,
    paths: RunPaths,
    *,
    resume: bool,
    progress: bool,
    extra_state: Mapping[str, Any],
    teacher: Mapping[str, Any],
) -> dict[str, Any]:
    """Train a student on ``train_set`` with the loss ``make_fns(runtime)`` builds (eq. 7 with
    its teacher: the store's, or the network run online) and evaluate on the test rows.
    ``teacher`` (how the soft targets were made, their teacher-network passes) goes into the
    metrics JSON beside the row counts."""
    counts = row_counts(train_set)
    log.info("student trains on %d labelled and %d unlabelled row(s)%s", counts["labelled"], counts["unlabelled"],
             f" ({counts['unlabelled_left_out']} unlabelled left out: kd_weight 0 or unlabelled: false)"
             if counts["unlabelled_left_out"] else "")
    test_set = PoseDataset(boxes, "test", size, train=False, seed=cfg.seed) if has_rows(boxes, "test") else None
    engine = dataclasses.replace(cfg.engine(), progress=progress)
    run = TrainingRun(paths, "student", cfg.to_dict(), size, resume=resume,
                      metrics_extra={"rows": counts, "teacher": dict(teacher)}, extra_state=extra_state)
    with training_runtime(engine.device) as rt:
        set_seed(cfg.seed)
        model = HeadPoseNet(cfg.spec(), pretrained=cfg.pretrained)
        if cfg.weights:
            load_backbone_weights(model, cfg.weights)
        return fit(model, make_fns(rt), train_set, test_set, engine, rt, run)


__all__ = [
    "StudentConfig", "StudentDataset", "check_resume", "row_counts", "run_student", "student_dataset", "student_fns",
    "teacher_input", "train_student",
]
