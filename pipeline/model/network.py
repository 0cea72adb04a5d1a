"""Head pose networks (docs/design.md §4): a ResNet trunk (torchvision's layout,
:mod:`pipeline.model.resnet`) with global average pooling,
an optional regression head ``θ·tanh(out)`` and one RvC head ``Linear(C, 3·q_b)`` per bin
size. Stage 1 uses {reg, b = 1, 2, 3, 4}; the stage-2 student uses one RvC head, b = 1.

``forward`` returns a dict: ``"reg"`` → [B, 3] degrees (when present) and ``"bin<b>"`` →
[B, 3, q_b] logits, angles in the order pitch, yaw, roll.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pipeline.core.angles import THETA
from pipeline.core.bins import BinGrid
from pipeline.model.resnet import ARCHITECTURES, ResNet, resnet

log = logging.getLogger(__name__)

BACKBONES = tuple(ARCHITECTURES)


def head_key(size: float) -> str:
    """The output key of the RvC head with bin size ``size`` (e.g. ``"bin1"``)."""
    return f"bin{size:g}"


# The bin-1 head: the student's one head and the head whose ensemble distributions are the
# teacher labels (docs/design.md §4, §6).
LABEL_BIN = 1
LABEL_HEAD = head_key(LABEL_BIN)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the architecture; stored in every checkpoint."""

    backbone: str = "resnet50"
    bin_sizes: tuple[float, ...] = (1, 2, 3, 4)
    regression: bool = True
    theta: float = THETA
    # BatchNorm1d on the pooled trunk features before the heads. Off by default (the paper's
    # network, and checkpoints written before the option existed have no such key).
    feature_norm: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if not self.bin_sizes:
            raise ValueError("bin_sizes is empty: the model needs at least one RvC head")
        if len(set(self.bin_sizes)) != len(self.bin_sizes):
            raise ValueError(f"bin_sizes {list(self.bin_sizes)!r} has duplicates")
        for b in self.bin_sizes:
            BinGrid(b, self.theta)  # raises ValueError naming the bad size

    @property
    def grids(self) -> dict[str, BinGrid]:
        return {head_key(b): BinGrid(b, self.theta) for b in self.bin_sizes}

    @property
    def predict_key(self) -> str:
        """Test-time prediction uses the RvC head with the smallest bin size (docs/design.md §4)."""
        return head_key(min(self.bin_sizes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bin_sizes"] = list(self.bin_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["bin_sizes"] = tuple(d["bin_sizes"])
        return cls(**d)


def build_trunk(backbone: str, pretrained: bool) -> ResNet:
    """``backbone``, with torchvision's ImageNet weights if ``pretrained`` (its weights API takes
    them from ``$TORCH_HOME/hub/checkpoints`` or downloads them there; torchvision is imported
    only here, see :mod:`pipeline.model.resnet`)."""
    trunk = resnet(backbone)
    if not pretrained:
        return trunk
    import torchvision

    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    try:
        trunk.load_state_dict(weights.get_state_dict(progress=True, check_hash=True))
    except OSError as exc:  # URLError is an OSError: no network (common on GPU cluster nodes)
        import os

        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        name = os.path.basename(weights.url)
        raise ValueError(
            f"{backbone}: pretrained: true needs torchvision's ImageNet weights {name}, which are not in {folder} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}) and cannot be downloaded here ({exc}); "
            f"either put the file there (download {weights.url} on a machine with internet), or set weights: "
            "PATH to a local state dict of the backbone (and pretrained: false)"
        ) from None
    return trunk


class HeadPoseNet(nn.Module):
    def __init__(self, spec: ModelSpec, pretrained: bool = False):
        """``pretrained``: torchvision's ImageNet weights; a local state dict is loaded with
        :func:`pipeline.model.checkpoint.load_backbone_weights` (which refuses a mismatch)."""
        super().__init__()
        self.spec = spec
        trunk = build_trunk(spec.backbone, pretrained)
        channels = trunk.fc.in_features
        trunk.fc = nn.Identity()  # the trunk already pools globally (any input size)
        self.trunk = trunk
        # Pooled ResNet features are post-ReLU with a large common offset and a small spread (at
        # 64 px from scratch: mean ~0.43, per-feature std ~0.08); softmax heads over 198 bins
        # learn far more slowly from such inputs than from standardised ones (docs/design.md §4).
        self.neck = nn.BatchNorm1d(channels) if spec.feature_norm else None
        self.reg = nn.Linear(channels, 3) if spec.regression else None
        self.heads = nn.ModuleDict({k: nn.Linear(channels, 3 * g.count) for k, g in spec.grids.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.trunk(x)
        if self.neck is not None:
            feats = self.neck(feats)
        out: dict[str, torch.Tensor] = {}
        if self.reg is not None:
            out["reg"] = self.spec.theta * torch.tanh(self.reg(feats).float())
        for k, head in self.heads.items():
            out[k] = head(feats).view(x.shape[0], 3, -1)
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3] degrees (pitch, yaw, roll) from the smallest-bin RvC head (eq. 2)."""
        key = self.spec.predict_key
        return self.spec.grids[key].decode(self(x)[key])
