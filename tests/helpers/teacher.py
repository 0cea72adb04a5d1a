"""Helpers for the teacher-label tests: a tiny random-init stage-1 checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.model.checkpoint import checkpoint_state, save_checkpoint
from pipeline.model.network import HeadPoseNet, ModelSpec


def make_teacher_checkpoint(path: Path, size: int = 32, backbone: str = "resnet18", seed: int = 0) -> Path:
    """Save a random-init stage-1 network (heads reg + bin 1, 2, 3, 4) as a checkpoint."""
    torch.manual_seed(seed)
    spec = ModelSpec(backbone)
    model = HeadPoseNet(spec)
    # non-trivial BN statistics so eval mode is not the identity
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, checkpoint_state("stage1", model, (size, size)))
    return path
