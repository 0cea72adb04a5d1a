"""Stage 1 (paper §3.2, eq. 4): the multi-head ResNet teacher (regression head + RvC heads b = 1..4)
trained on the train rows of boxes.parquet with the shared engine; `hpekd train-teacher`."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.core.angles import ANGLES
from pipeline.data.datasets import PoseDataset
from pipeline.data.transforms import AugmentConfig
from pipeline.manifest.rows import RowQuery, has_rows
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_backbone_weights
from pipeline.model.losses import stage1_loss
from pipeline.model.network import HeadPoseNet, ModelSpec
from pipeline.training.config import TrainConfig, input_hw
from pipeline.training.engine import LossFn, PredictFn, TrainingRun, fit
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import set_seed, training_runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Stage1Config(TrainConfig):
    """params.yaml section ``train_teacher`` (unknown keys are an error)."""

    backbone: str
    bin_sizes: tuple[float, ...]
    regression: bool
    pretrained: bool  # torchvision ImageNet weights (downloads into TORCH_HOME)
    weights: str | None  # local backbone state dict (torchvision layout) or an hpekd checkpoint
    input_size: int | tuple[int, int]
    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    scheduler: str
    workers: int
    seed: int
    device: str
    eval_every: int
    feature_norm: bool  # BatchNorm1d on the pooled features before the heads (docs/design.md §4)
    head_lr_mult: float  # lr multiplier of the RvC heads (trunk and regression head: lr)
    flip_p: float
    max_angle: float
    photometric: bool
    datasets: tuple[str, ...]  # train only on these `dataset` values (empty = all train rows)

    def __post_init__(self) -> None:
        self._check_backbone()
        for b in self.bin_sizes:
            if not isinstance(b, (int, float)) or isinstance(b, bool) or not 0.5 <= b <= 99 or (2 * 99 / b) < 2:
                raise ValueError(
                    f"bin size {b!r} does not divide ±99° sensibly: use a number of degrees in [0.5, 99] (e.g. 1, 2, 3, 4)"
                )
        self.spec()  # validates duplicates etc.
        self.size  # validates input_size
        self.engine()
        self.augment()

    @property
    def size(self) -> tuple[int, int]:
        return input_hw(self.input_size)  # type: ignore[return-value]

    def spec(self) -> ModelSpec:
        return ModelSpec(self.backbone, tuple(self.bin_sizes), self.regression, feature_norm=self.feature_norm)

    def augment(self) -> AugmentConfig:
        return AugmentConfig(self.flip_p, self.max_angle, self.photometric)


def stage1_fns(spec: ModelSpec) -> tuple[LossFn, PredictFn]:
    """Eq. 4 loss and smallest-bin prediction (eq. 2) for a stage-1 model."""
    grids = spec.grids
    key = spec.predict_key

    def loss_fn(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        return stage1_loss(outputs, batch["target"], grids)

    def predict_fn(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return grids[key].decode(outputs[key])

    return loss_fn, predict_fn


def train_teacher(
    cfg: Stage1Config,
    boxes: str | os.PathLike[str],
    paths: RunPaths,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Stage 1: train the multi-head teacher on the labelled ``train`` rows of ``boxes`` and
    evaluate on its ``test`` rows (if any) after each epoch, writing to ``paths``. Unlabelled rows
    are left out (the teacher labels them later) and counted in the metrics' ``rows``.
    ``resume`` / ``stop_after``: see :class:`pipeline.training.engine.TrainingRun`."""
    df = read_boxes(boxes)
    engine = dataclasses.replace(cfg.engine(), progress=progress)
    src = repr(str(boxes))
    train_set = PoseDataset(df, RowQuery("train", cfg.datasets), cfg.size, train=True, augment=cfg.augment(),
                            seed=cfg.seed, source=src)
    if train_set.unlabelled_left_out:
        log.info("stage 1 trains on %d labelled row(s); %d unlabelled row(s) left out (the teacher labels them)",
                 len(train_set), train_set.unlabelled_left_out)
    test_set = PoseDataset(df, "test", cfg.size, train=False, seed=cfg.seed, source=src) if has_rows(df, "test") else None
    run = TrainingRun(
        paths, "stage1", cfg.to_dict(), cfg.size, resume=resume, stop_after=stop_after,
        metrics_extra={"rows": {"labelled": len(train_set), "unlabelled_left_out": train_set.unlabelled_left_out}},
    )
    with training_runtime(engine.device) as rt:
        set_seed(cfg.seed)
        model = HeadPoseNet(cfg.spec(), pretrained=cfg.pretrained)
        if cfg.weights:
            load_backbone_weights(model, cfg.weights)
        return fit(model, stage1_fns(model.spec), train_set, test_set, engine, rt, run)


def baseline_mae(train_angles: np.ndarray, test_angles: np.ndarray) -> dict[str, float]:
    """MAE of predicting the training mean pose for every test sample (a sanity baseline)."""
    mean = np.asarray(train_angles, dtype=np.float64).mean(0)
    mae = np.abs(np.asarray(test_angles, dtype=np.float64) - mean).mean(0)
    out = {f"mae_{a}": float(m) for a, m in zip(ANGLES, mae)}
    out["mae_mean"] = float(mae.mean())
    return out
