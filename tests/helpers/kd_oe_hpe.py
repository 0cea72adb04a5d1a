"""The paper's released network layout (AndreySheka/kd_oe_hpe ``src/model.py``), written here
from its description so tests can make state dicts with exactly its key names, and the inverse
of the importer (an hpekd bin-1 model in their layout)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from torch import nn

from pipeline.model.network import LABEL_HEAD, HeadPoseNet


class Encoder(nn.Module):
    """``encoder_net``: a torchvision ResNet under ``model`` without ``fc`` and ``avgpool``."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.model = getattr(torchvision.models, backbone)(weights=None)
        self.out_features = self.model.fc.in_features
        del self.model.fc
        del self.model.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))


class Head(nn.Module):
    """``head_net``: 7×7 average pooling, then ``pitch``, ``yaw``, ``roll`` = Linear(C, 198), stacked."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d((7, 7))
        self.pitch = nn.Linear(channels, 198)
        self.yaw = nn.Linear(channels, 198)
        self.roll = nn.Linear(channels, 198)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return torch.stack([self.pitch(x), self.yaw(x), self.roll(x)])  # [3, B, 198]


class KdOeHpeNetwork(nn.Module):
    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.encoder_net = Encoder(backbone)
        self.head_net = Head(self.encoder_net.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_net(self.encoder_net(x))


def their_angles(logits: torch.Tensor) -> np.ndarray:
    """Their decoding (``calc_angles``): [3, B, 198] logits → [B, 3] degrees, their convention."""
    p = torch.softmax(logits.double(), -1).numpy()
    return (p * np.linspace(-98.5, 98.5, 198)).sum(-1).T


def export_kd_oe_hpe(model: HeadPoseNet) -> dict[str, torch.Tensor]:
    """An hpekd bin-1 model as a kd_oe_hpe state dict (pitch mirrored back to their sign)."""
    out = {f"encoder_net.model.{k}": v.clone() for k, v in model.trunk.state_dict().items()}
    w, b = model.heads[LABEL_HEAD].weight.detach(), model.heads[LABEL_HEAD].bias.detach()
    for j, name in enumerate(("pitch", "yaw", "roll")):
        wj, bj = w[198 * j: 198 * (j + 1)], b[198 * j: 198 * (j + 1)]
        if name == "pitch":
            wj, bj = wj.flip(0), bj.flip(0)
        out[f"head_net.{name}.weight"], out[f"head_net.{name}.bias"] = wj.clone(), bj.clone()
    return out
