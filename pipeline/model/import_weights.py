"""Importing released weights as hpekd checkpoints (``hpekd import-weights``).

Format ``kd_oe_hpe``: the models the paper's authors released (AndreySheka/kd_oe_hpe,
``models/ap{1,2,3}/resnet{18,…,152}.pth``), state dicts of their ``src/model.py`` ``Network``:

- ``encoder_net.model.<key>``: a torchvision ResNet without ``fc`` (and ``avgpool``, which has no
  weights); its output is average-pooled over 7×7, i.e. globally at their 224×224 input;
- ``head_net.{pitch,yaw,roll}.{weight,bias}``: three ``Linear(C, 198)``, stacked as [3, B, 198],
  decoded with bins centred −98.5…98.5 (= our bin-1 grid, docs/design.md §4);
- input: the box crop resized to 224×224, RGB/255 with ImageNet mean/std (ours too).

Their pitch is the negative of ours (300W-LP ``angles * [-1, 1, 1]``; docs/design.md §3), and the bin
grid is symmetric, so the importer reverses the 198 pitch logits (the rows of the pitch
``Linear``): the imported network's pitch distribution is theirs mirrored, yaw and roll unchanged.
The result is a ``student`` checkpoint with one RvC head (bin 1, ``heads["bin1"]`` =
``Linear(C, 3·198)`` viewed as [B, 3, 198], pitch, yaw, roll), input 224×224, usable by
``evaluate``, ``predict``, ``export-onnx`` and as ``teacher-labels --model``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.model.checkpoint import checkpoint_state, read_torch_file, save_checkpoint
from pipeline.model.network import BACKBONES, LABEL_BIN, LABEL_HEAD, HeadPoseNet, ModelSpec

log = logging.getLogger(__name__)

FORMATS = ("kd_oe_hpe",)
KD_OE_HPE_INPUT = (224, 224)
KD_OE_HPE_BINS = 198
_ENC, _HEAD = "encoder_net.model.", "head_net."
_ANGLES = ("pitch", "yaw", "roll")  # their stacking order = ours


@dataclass(frozen=True)
class ImportReport:
    out: str
    backbone: str
    input_size: tuple[int, int]
    bins: int
    source_sha256: str


def student_model(backbone: str) -> HeadPoseNet:
    """The architecture an imported model gets: ``backbone`` + one RvC head of bin size 1."""
    return HeadPoseNet(ModelSpec(backbone=backbone, bin_sizes=(LABEL_BIN,), regression=False))


def expected_layout(backbone: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of a kd_oe_hpe ``Network(backbone)`` state dict."""
    trunk = student_model(backbone).trunk.state_dict()
    channels = student_model(backbone).heads[LABEL_HEAD].in_features
    out = {_ENC + k: tuple(v.shape) for k, v in trunk.items()}
    for a in _ANGLES:
        out[f"{_HEAD}{a}.weight"] = (KD_OE_HPE_BINS, channels)
        out[f"{_HEAD}{a}.bias"] = (KD_OE_HPE_BINS,)
    return out


def _describe(backbone: str) -> str:
    channels = expected_layout(backbone)[f"{_HEAD}pitch.weight"][1]
    return (f"the kd_oe_hpe layout (AndreySheka/kd_oe_hpe src/model.py): encoder_net.model.<torchvision {backbone} "
            f"without fc> + head_net.{{pitch,yaw,roll}} = Linear({channels}, {KD_OE_HPE_BINS})")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A ``.pth`` state dict of tensors (also inside ``{"state_dict": …}`` / ``{"model": …}``,
    DataParallel's ``module.`` prefix removed); ``ValueError`` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} not found")
    state: Any = read_torch_file(p, "weights file")  # as data: weights_only, never runs code
    if isinstance(state, Mapping) and "model_spec" in state:
        raise ValueError(f"{str(p)!r} is already an hpekd checkpoint: use it as it is")
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {str(p)!r} does not hold a state dict of tensors")
    state = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _guess_backbone(state: Mapping[str, torch.Tensor]) -> str | None:
    for b in BACKBONES:
        layout = expected_layout(b)
        if set(layout) <= set(state) | {k for k in layout if k.endswith("num_batches_tracked")} and all(
                tuple(state[k].shape) == s for k, s in layout.items() if k in state):
            return b
    return None


def check_layout(state: Mapping[str, torch.Tensor], backbone: str, where: str) -> None:
    """``ValueError`` naming the first missing/unexpected/mis-shaped keys and the expected layout.
    BatchNorm ``num_batches_tracked`` counters may be absent (older torchvision)."""
    layout = expected_layout(backbone)
    missing = [k for k in layout if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in layout]
    shapes = [k for k in layout if k in state and tuple(state[k].shape) != layout[k]]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s) {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s) {unexpected[:3]}")
    if shapes:
        k = shapes[0]
        parts.append(f"shape of {k!r} is {tuple(state[k].shape)}, expected {layout[k]}")
    guess = _guess_backbone(state) if (missing or shapes) else None
    hint = f"; it looks like a kd_oe_hpe {guess}: pass --backbone {guess}" if guess and guess != backbone else ""
    raise ValueError(f"{where} is not a kd_oe_hpe {backbone} state dict: {'; '.join(parts)}; "
                     f"expected {_describe(backbone)}{hint}")


def convert_kd_oe_hpe(state: Mapping[str, torch.Tensor], backbone: str, where: str = "state dict") -> HeadPoseNet:
    """A kd_oe_hpe ``Network`` state dict → an hpekd :class:`HeadPoseNet` (one bin-1 RvC head)
    whose distributions are theirs with pitch mirrored (our convention)."""
    check_layout(state, backbone, where)
    model = student_model(backbone)
    trunk = model.trunk.state_dict()
    trunk.update({k: state[_ENC + k] for k in trunk if _ENC + k in state})
    model.trunk.load_state_dict(trunk)
    weight = [state[f"{_HEAD}{a}.weight"] for a in _ANGLES]
    bias = [state[f"{_HEAD}{a}.bias"] for a in _ANGLES]
    weight[0], bias[0] = weight[0].flip(0), bias[0].flip(0)  # their pitch = −ours: mirror its bins
    head = model.heads[LABEL_HEAD]
    with torch.no_grad():
        head.weight.copy_(torch.cat(weight, 0).to(head.weight.dtype))
        head.bias.copy_(torch.cat(bias, 0).to(head.bias.dtype))
    return model.eval()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_weights(path: str | os.PathLike[str], backbone: str, out: str | os.PathLike[str],
                   fmt: str = "kd_oe_hpe") -> ImportReport:
    """Convert released weights at ``path`` into an hpekd ``student`` checkpoint at ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"weights format {fmt!r} is not known; known formats: {list(FORMATS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    p = Path(path)
    state = read_state_dict(p)
    model = convert_kd_oe_hpe(state, backbone, where=repr(str(p)))
    sha = _sha256(p)
    config = {"imported": {"format": fmt, "source": p.name, "source_sha256": sha, "backbone": backbone,
                           "pitch": "mirrored (kd_oe_hpe pitch = -pitch of 300W-LP)"}}
    save_checkpoint(out, checkpoint_state("student", model, KD_OE_HPE_INPUT, config=config))
    log.info("imported %s (%s, %s) into %s", p, fmt, backbone, out)
    return ImportReport(str(out), backbone, KD_OE_HPE_INPUT, KD_OE_HPE_BINS, sha)
