"""hpekd's ResNet trunks against torchvision's (pipeline/model/resnet.py): the same weights from the
same seed, the same generator state afterwards (so the heads built next draw the same numbers),
the same outputs and gradients, and torchvision's ImageNet weights load through the real path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision

from pipeline.model.network import HeadPoseNet, ModelSpec, build_trunk
from pipeline.model.resnet import ARCHITECTURES, resnet


def _pair(name: str, seed: int = 3) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    ours = resnet(name)
    after_ours = torch.get_rng_state()
    torch.manual_seed(seed)
    theirs = getattr(torchvision.models, name)(weights=None)
    assert torch.equal(torch.get_rng_state(), after_ours), f"{name}: a different number of draws"
    return ours, theirs


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_seed_gives_torchvisions_weights(name: str) -> None:
    ours, theirs = _pair(name)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    bad = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not bad, f"{name}: {len(bad)} tensors differ, first {bad[:3]}"


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])  # one of each block type
def test_forward_and_gradients_are_torchvisions(name: str) -> None:
    ours, theirs = _pair(name)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        outs = []
        for net in (ours, theirs):
            net.zero_grad()
            y = net(x)
            y.square().mean().backward()
            outs.append((y.detach(), net.conv1.weight.grad.clone(), net.layer4[0].conv1.weight.grad.clone()))
        for u, v in zip(*outs):
            assert torch.equal(u, v)


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(ValueError, match="unknown ResNet 'resnet19'"):
        resnet("resnet19")


def test_pretrained_weights_load_from_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pretrained: true`` takes torchvision's file from ``$TORCH_HOME/hub/checkpoints`` (here a
    stand-in with the real file name: no download in tests) into the trunk, ``fc`` dropped."""
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(11)
    donor = torchvision.models.resnet18(weights=None)
    torch.save(donor.state_dict(), folder / os.path.basename(weights.url))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    trunk = build_trunk("resnet18", pretrained=True)
    assert torch.equal(trunk.layer3[1].conv2.weight, donor.layer3[1].conv2.weight)
    torch.manual_seed(0)
    net = HeadPoseNet(ModelSpec(backbone="resnet18", bin_sizes=(1,), regression=False), pretrained=True)
    assert torch.equal(net.trunk.conv1.weight, donor.conv1.weight)
    assert isinstance(net.trunk.fc, torch.nn.Identity)
