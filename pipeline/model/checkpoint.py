"""Checkpoints: model, optimizer, scheduler, epoch, config, written atomically.

A checkpoint is a dict with ``kind`` ("stage1" or "student"), ``model_spec``
(:class:`pipeline.model.network.ModelSpec` as a dict), ``model`` (state dict), ``optimizer``,
``scheduler``, ``epoch`` (last finished epoch), ``config`` (the stage's params) and
``input_size``. Loading checks the kind and the architecture and names what differs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.core.io import atomic_path
from pipeline.model.network import HeadPoseNet, ModelSpec

log = logging.getLogger(__name__)

KINDS = ("stage1", "student")


def checkpoint_state(
    kind: str,
    model: HeadPoseNet,
    input_size: tuple[int, int] | list[int],
    *,
    epoch: int = 0,
    config: dict[str, Any] | None = None,
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one builder of a checkpoint dict (training, weight importers, test helpers).

    ``extra`` keys (engine settings, RNG states, metric history) are stored as given.
    """
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind {kind!r} must be one of {KINDS}")
    return {
        "kind": kind,
        "model_spec": model.spec.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "epoch": int(epoch),
        "config": dict(config or {}),
        "input_size": [int(s) for s in input_size],
        **extra,
    }


def input_size_of(state: dict[str, Any], where: str = "checkpoint") -> tuple[int, int]:
    """The network input (h, w) a checkpoint was trained at; ``where`` names it in the error."""
    size = state.get("input_size")
    if not size or len(size) != 2:
        raise ValueError(f"checkpoint {where} has no input_size; it was not written by hpekd train-teacher/train-student")
    return int(size[0]), int(size[1])


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    if state.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind {state.get('kind')!r} must be one of {KINDS}")
    with atomic_path(path, ".pt") as tmp, open(tmp, "wb") as f:
        # a file object, not a path: torch names the zip's root folder after a path's stem, which
        # would put the random temporary name into the bytes (same state -> same checkpoint bytes)
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} not found")
    try:
        state = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise ValueError(f"{str(p)!r} is not a readable hpekd checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("kind") not in KINDS or "model_spec" not in state:
        raise ValueError(
            f"{str(p)!r} is not an hpekd checkpoint: expected kind in {KINDS} with a model_spec "
            "(train one with `hpekd train-teacher` or `hpekd train-student`)"
        )
    return state


def model_from_checkpoint(
    path_or_state: str | os.PathLike[str] | dict[str, Any], map_location: str | torch.device = "cpu"
) -> tuple[HeadPoseNet, dict[str, Any]]:
    state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state, map_location)
    spec = ModelSpec.from_dict(state["model_spec"])
    model = HeadPoseNet(spec)
    load_model_state(model, state["model"], where=str(path_or_state if not isinstance(path_or_state, dict) else "checkpoint"))
    return model, state


def load_model_state(model: HeadPoseNet, weights: dict[str, torch.Tensor], where: str) -> None:
    """Strict load that names the first mismatching parameter instead of a wall of keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        detail = (
            f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
            else f"shape of {shapes[0]!r}: {tuple(weights[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}"
        )
        raise ValueError(
            f"checkpoint {where} does not match architecture {model.spec.backbone} "
            f"with heads {list(model.heads)}: {detail}"
        )
    model.load_state_dict(weights)


def load_backbone_weights(model: HeadPoseNet, path: str | os.PathLike[str]) -> None:
    """Load a local backbone state dict into ``model.trunk``, refusing other architectures.

    Accepts a torchvision ResNet state dict (``fc.*`` ignored) or an hpekd checkpoint (its
    ``trunk.*`` weights). Any missing, unexpected or mis-shaped trunk key is an error naming
    the file (a ResNet34 state dict contains every ResNet18 key, hence the unexpected check).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"weights file {str(p)!r} is not a torch state dict ({exc.__class__.__name__}: {exc})") from exc
    if isinstance(state, dict) and "model_spec" in state and "model" in state:
        other = state["model_spec"].get("backbone")
        if other != model.spec.backbone:
            raise ValueError(f"weights {str(p)!r} are an hpekd {other} checkpoint, but backbone is {model.spec.backbone!r}")
        state = {k[len("trunk."):]: v for k, v in state["model"].items() if k.startswith("trunk.")}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {str(p)!r} does not hold a state dict of tensors")
    own = model.trunk.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith("fc.")]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        what = (
            f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
            else f"shape of {shapes[0]!r} {tuple(state[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}"
        )
        raise ValueError(f"weights {str(p)!r} do not fit backbone {model.spec.backbone!r}: {what}")
    model.trunk.load_state_dict({k: state[k] for k in own})
    log.info("loaded backbone weights from %s", p)
