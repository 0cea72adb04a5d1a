"""Stage 2: a student with one RvC head (bin size 1) trained on the cached teacher labels.

The student never runs the teacher: it reads the soft labels of the label store written by
``hpekd teacher-labels`` (docs/design.md §6) into memory and, for every sample of every epoch,

1. picks one of the store's ``V`` views, uniformly and reproducibly (the sample's generator
   :func:`pipeline.data.transforms.sample_rng` of ``(seed, epoch, row)``);
2. replays that view's geometric transform on the image exactly — the same
   :func:`pipeline.core.geometry.crop` with the stored ``View(flip, angle)`` that built the
   teacher's region Z, so the student's input is the center crop of Z — and corrects the
   ground-truth pose with :meth:`View.pose`;
3. takes the teacher distribution of that view as the soft target and adds fresh
   photometric augmentation (it does not change the pose);
4. minimises eq. 7 (:func:`pipeline.model.losses.student_loss`):
   ``(ce_weight · Σ CE(gt, out) + Σ KL(teacher ‖ out)) / 2``; an unlabelled row (manifest
   ``labelled = false``, in the store like any training row) has no CE part, so it is learnt
   from the teacher alone. The control student (``kd_weight: 0``) trains on the labelled rows
   only, since an unlabelled row would give it nothing to learn.

Training runs on the shared engine :func:`pipeline.training.engine.fit` (bf16 AMP + channels-last on
CUDA, torchrun DDP, exact resume, DVC metrics), like stage 1.

Before training, the store's provenance is checked against what the student is asked to
train on (:func:`check_provenance`): the boxes table's sha256 and its training sample ids in
order, the bin grid (b, θ, Q), the input size and normalisation, and optionally the teacher
checkpoint; a mismatch is a ``ValueError`` naming the field.
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
from pipeline.core.geometry import crop
from pipeline.core.images import IMAGENET_MEAN, IMAGENET_STD
from pipeline.core.io import sha256_file
from pipeline.core.views import View, view_from_row
from pipeline.data.datasets import PoseDataset
from pipeline.data.transforms import AugmentConfig
from pipeline.manifest.rows import RowQuery, has_rows
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_backbone_weights, load_checkpoint
from pipeline.model.losses import student_loss
from pipeline.model.network import LABEL_BIN, LABEL_HEAD, HeadPoseNet, ModelSpec
from pipeline.teacher.labelread import Mismatch, TeacherLabels, compare_with_boxes, load_teacher_labels
from pipeline.teacher.labelstore import diff_provenance
from pipeline.training.config import TrainConfig, input_hw
from pipeline.training.engine import TrainingRun, fit
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import set_seed, training_runtime

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class StudentConfig(TrainConfig):
    """params.yaml section ``train_student`` (unknown keys are an error).

    The backbone usually comes from the command line (``--backbone``, one DVC stage per
    entry of the ``students`` list); ``input_size: null`` means "the store's input size".
    """

    backbone: str = field(default="resnet18", metadata=OPTIONAL)  # set by --backbone (one stage per student)
    pretrained: bool = False  # torchvision ImageNet weights (downloads into TORCH_HOME)
    weights: str | None = None  # local backbone state dict (torchvision layout) or an hpekd checkpoint
    input_size: int | tuple[int, int] | None = None  # must equal the store's (null: take it from the store)
    batch_size: int = 128
    epochs: int = 100
    lr: float = 3e-4
    weight_decay: float = 0.0
    scheduler: str = "none"
    ce_weight: float = 0.05  # eq. 7 weight of the ground-truth cross-entropy
    kd_weight: float = 1.0  # weight of the distillation (KL) term; 0 = the no-KD control student
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    feature_norm: bool = False  # BatchNorm1d on the pooled features before the heads (docs/design.md §4)
    head_lr_mult: float = 1.0  # lr multiplier of the RvC heads (trunk and regression head: lr)
    photometric: bool = True  # fresh albumentations each epoch (the views come from the store)
    max_label_memory_gb: float = 16.0  # refuse stores larger than this (they are loaded whole)
    datasets: tuple[str, ...] = ()  # train only on these `dataset` values (empty = all labelled rows)
    unlabelled: bool = True  # also the store's unlabelled rows (KD alone); false = the labelled rows only

    def __post_init__(self) -> None:
        self._check_backbone()
        if not self.ce_weight >= 0:
            raise ValueError(f"ce_weight {self.ce_weight!r} must be >= 0")
        if not self.kd_weight >= 0 or (self.kd_weight == 0 and self.ce_weight == 0):
            raise ValueError(f"kd_weight {self.kd_weight!r} must be >= 0, and not 0 together with ce_weight")
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


# ----------------------------------------------------------------------------- the label store


def _field(attrs: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = attrs
    for k in dotted.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


REBUILD_LABELS = "rebuild the labels with `hpekd teacher-labels` for these inputs (or pass the matching files)"


def _mismatch(labels: TeacherLabels, field: str, store: Any, here: Any, hint: str) -> ValueError:
    return ValueError(f"label store {labels.path!r} does not match this run: {field} differs "
                      f"(store {store!r}, here {here!r}); {hint}")


def _table_error(labels: TeacherLabels, m: Mismatch, boxes_path: str | os.PathLike[str]) -> ValueError:
    """The student's words for a store that does not match its boxes table."""
    if m.field == "manifest.sha256":
        return _mismatch(labels, m.field, m.store, m.table,
                         f"the store was made from another boxes table than {str(boxes_path)!r}; {REBUILD_LABELS}")
    if m.field == "sample_id" and m.first is None:
        return _mismatch(labels, m.field, f"{m.store} rows", f"{m.table} {labels.split} rows with status ok",
                         REBUILD_LABELS)
    if m.field == "sample_id":
        return _mismatch(labels, m.field, f"row {m.first} = {m.store}", f"row {m.first} = {m.table}",
                         f"{m.count} row(s) differ; {REBUILD_LABELS}")
    return _mismatch(labels, m.field, m.store, m.table, REBUILD_LABELS)


def check_provenance(
    labels: TeacherLabels,
    boxes_path: str | os.PathLike[str],
    boxes: pd.DataFrame,
    spec: ModelSpec,
    input_size: tuple[int, int] | None,
    teacher: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a store made for other data, another teacher or another head/input.

    Checks, in order, naming the first field that differs: ``manifest.sha256`` (the boxes
    file), ``sample_id`` (the store's rows must be the boxes table's training rows with
    status ok, in order; :func:`pipeline.teacher.labelread.compare_with_boxes`, as ``hpekd
    labels verify``), ``bins.b`` / ``bins.theta`` / ``bins.Q`` (the student's bin-1
    head), ``input.size``, ``input.normalization``, and ``teacher.sha256`` when a teacher
    checkpoint is given.
    """
    attrs = labels.attrs
    found = compare_with_boxes(attrs, labels.sample_ids, labels.rows, sha256_file(boxes_path), boxes)
    if found:
        raise _table_error(labels, found[0], boxes_path)
    grid = spec.grids[LABEL_HEAD]
    for key, here in (("b", grid.size), ("theta", grid.theta), ("Q", grid.count)):
        store = _field(attrs, f"bins.{key}")
        if store is None or float(store) != float(here):
            raise _mismatch(labels, f"bins.{key}", store, here, "the student's head is bin size 1 over ±θ; " + REBUILD_LABELS)
    if labels.n_bins != grid.count:
        raise _mismatch(labels, "bins.Q", f"distributions of {labels.n_bins} bins", grid.count, REBUILD_LABELS)
    store_size = _field(attrs, "input.size")
    if input_size is not None and (store_size is None or tuple(store_size) != tuple(input_size)):
        raise _mismatch(labels, "input.size", store_size, list(input_size),
                        "set train_student.input_size to the store's (or null) or rebuild the labels at this size")
    norm = _field(attrs, "input.normalization") or {}
    if norm and (list(norm.get("mean", IMAGENET_MEAN)) != list(IMAGENET_MEAN)
                 or list(norm.get("std", IMAGENET_STD)) != list(IMAGENET_STD)):
        raise _mismatch(labels, "input.normalization", norm, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
                        REBUILD_LABELS)
    if teacher is not None:
        tsha = sha256_file(teacher)
        if _field(attrs, "teacher.sha256") != tsha:
            raise _mismatch(labels, "teacher.sha256", _field(attrs, "teacher.sha256"), tsha,
                            f"the store was made by another teacher than {str(teacher)!r}; {REBUILD_LABELS}")


# ----------------------------------------------------------------------------- data


class ViewReplay:
    """``PoseDataset.view_fn``: a uniformly drawn stored view per sample per epoch.

    ``rng`` is the sample's generator for the epoch (seeded by (seed, epoch, row)); the
    returned ``view_id`` is the store's view index, used to fetch the soft target.
    Picklable, so DataLoader workers get it.
    """

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


def teacher_input(image: np.ndarray, box: Sequence[float], size: tuple[int, int], view: View, p: int) -> np.ndarray:
    """The teacher's view of a sample without ensemble offset: the center crop of Z (docs/design.md §5)."""
    h, w = size
    return crop(image, box, size, pad=p, view=view)[p : p + h, p : p + w]


class TeacherTable:
    """Soft-target lookup for a batch: the store's encoded arrays at ``[pos[row], view]``, moved
    to the device and decoded there (:meth:`pipeline.teacher.encoding.Encoding.decode_torch`)
    → [B, 3, Q]. The table holds the store encoded: a compact encoding is compact in RAM too."""

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


def student_fns(spec: ModelSpec, table: TeacherTable, ce_weight: float, kd_weight: float = 1.0):
    """Eq. 7 loss on the bin-1 head with the replayed view's soft target, and eq. 2 prediction."""
    grid = spec.grids[LABEL_HEAD]

    def loss_fn(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        teacher = table(batch["index"], batch["view_id"], outputs[LABEL_HEAD].device)
        return student_loss(outputs[LABEL_HEAD], batch["target"], teacher, grid, ce_weight, kd_weight,
                            labelled=batch.get("labelled"))

    def predict_fn(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return grid.decode(outputs[LABEL_HEAD])

    return loss_fn, predict_fn


def student_dataset(labels: TeacherLabels, boxes: pd.DataFrame, size: tuple[int, int], cfg: StudentConfig,
                    train: bool = True) -> PoseDataset:
    """Training rows of the store, replaying its views (``train=False``: no photometric).
    Unlabelled rows are included when the student distils (``kd_weight > 0``) and
    ``cfg.unlabelled`` is on."""
    rows = RowQuery(labels.split, cfg.datasets, unlabelled=cfg.unlabelled and cfg.kd_weight > 0)
    return PoseDataset(boxes, rows, size, train=train, augment=cfg.augment(), view_fn=ViewReplay(labels, len(boxes)),
                       seed=cfg.seed)


def row_counts(train_set: PoseDataset) -> dict[str, int]:
    """Labelled / unlabelled rows the student trains on, and unlabelled rows it leaves out."""
    n_unl = int((~train_set.labelled).sum())
    return {"labelled": len(train_set) - n_unl, "unlabelled": n_unl,
            "unlabelled_left_out": int(train_set.unlabelled_left_out)}


# ----------------------------------------------------------------------------- stage 2

# what a student checkpoint records of the store it learnt from (the encoding included: a store
# rebuilt with another encoding is another set of soft targets)
PROVENANCE_KEYS = ("teacher", "bins", "ensemble", "input", "manifest", "views", "encoding")


def labels_provenance(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: attrs.get(k) for k in PROVENANCE_KEYS}


def check_resume_labels(out: str | os.PathLike[str], provenance: Mapping[str, Any], labels_path: str) -> None:
    """``--resume`` continues a student only on the soft targets it began with: a checkpoint
    whose recorded store differs (another teacher, views or encoding) is refused."""
    if not os.path.isfile(out):
        return
    old = ((load_checkpoint(out, map_location="cpu").get("labels") or {}).get("provenance")) or {}
    diff = diff_provenance(old, provenance, PROVENANCE_KEYS)
    if diff:
        raise ValueError(
            f"cannot resume {str(out)!r} on label store {labels_path!r}: the checkpoint was trained on other soft "
            f"labels ({'; '.join(diff[:3])}); train from scratch (delete the checkpoint or drop --resume)"
        )


def train_student(
    cfg: StudentConfig,
    labels_path: str | os.PathLike[str],
    boxes_path: str | os.PathLike[str],
    paths: RunPaths,
    resume: bool = False,
    teacher: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 2: check and load the label store, then train the student with eq. 7 on the
    store's rows (replaying its views) and evaluate on the boxes table's ``test`` rows, writing
    to ``paths``."""
    if teacher is not None:  # a checkpoint, read as data and checked before its sha256 meets the store's
        load_checkpoint(teacher)
    boxes = read_boxes(boxes_path)
    labels = load_teacher_labels(labels_path, cfg.max_label_memory_gb)
    spec = cfg.spec()
    check_provenance(labels, boxes_path, boxes, spec, cfg.size, teacher)
    size = cfg.size or tuple(int(v) for v in labels.attrs["input"]["size"])
    train_set = student_dataset(labels, boxes, size, cfg)  # type: ignore[arg-type]
    n_left = len(labels.rows) - len(train_set) - train_set.unlabelled_left_out
    if n_left:
        log.info("%d store row(s) not used (angles outside ±99° or other datasets)", n_left)
    provenance = labels_provenance(labels.attrs)
    if resume:
        check_resume_labels(paths.out, provenance, str(labels_path))
    ens = labels.attrs.get("ensemble") or {}
    passes = len(labels.rows) * labels.n_views * int(ens.get("A", 0))
    table = TeacherTable(labels, len(boxes))
    return run_student(
        cfg, boxes, size, train_set, lambda rt: student_fns(spec, table, cfg.ce_weight, cfg.kd_weight), paths,
        resume=resume, progress=progress,
        extra_state={"labels": {"path": str(labels_path), "provenance": provenance}},
        teacher={"mode": "offline", "encoding": labels.encoding.name, "views": labels.n_views,
                 "network_passes": passes},
    )


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
    "PROVENANCE_KEYS", "StudentConfig", "TeacherTable", "ViewReplay", "check_provenance", "check_resume_labels",
    "labels_provenance", "row_counts", "run_student", "student_dataset", "student_fns", "teacher_input",
    "train_student",
]
