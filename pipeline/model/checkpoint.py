"""Checkpoints: model, optimizer, scheduler, epoch, config, written atomically, read as data.

A checkpoint is a dict with ``kind`` ("stage1" or "student"), ``model_spec``
(:class:`pipeline.model.network.ModelSpec` as a dict), ``model`` (state dict), ``optimizer``,
``scheduler``, ``epoch`` (last finished epoch), ``config`` (the stage's params) and
``input_size``. Loading checks the kind and the architecture and names what differs.

Every torch file hpekd reads (checkpoints, backbone weights, released weights) goes through
:func:`read_torch_file`, which unpickles with ``weights_only=True``: tensors, dicts, lists,
strings and numbers only, so a shared file can never run code (docs/security.md). A file the
safe loader refuses is refused in one line that names ``hpekd checkpoint upgrade OLD NEW
--trust``, the one place that ever loads a file unsafely (:mod:`pipeline.model.upgrade`).
:func:`validate_checkpoint` then checks the structure, naming the first missing or wrong field.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.io import atomic_path
from pipeline.model.network import BACKBONES, HeadPoseNet, ModelSpec

log = logging.getLogger(__name__)

KINDS = ("stage1", "student")
# ModelSpec fields every checkpoint's model_spec holds; feature_norm came later (absent = off)
SPEC_REQUIRED = ("backbone", "bin_sizes", "regression", "theta")
SPEC_OPTIONAL = ("feature_norm",)
UPGRADE = "hpekd checkpoint upgrade"

_np_core = getattr(np, "_core", None) or np.core  # numpy 2 names it _core; 1.26 pickles as numpy.core
# The only non-torch types hpekd writes into a checkpoint: numpy's RNG state in the ``rng`` of
# every training checkpoint (``np.random.get_state()``: its key is a uint32 ndarray), which
# ``--resume`` restores. Allowing exactly these globals keeps the bytes that `dvc repro` writes as
# they were (storing the state as a list would change every checkpoint). They run no code of the
# file's choosing: ``_reconstruct`` builds only an allowed class (ndarray), the dtype class allowed
# is uint32's alone, and an array's contents are unpickled by the same restricted loader.
NUMPY_RNG_GLOBALS: list[Any] = [
    (_np_core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    (_np_core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]
_ALLOWED_NAMES = {
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    f"{type(np.dtype(np.uint32)).__module__}.{type(np.dtype(np.uint32)).__qualname__}",
}


class UnsafeFile(ValueError):
    """A torch file holding Python objects the safe loader refuses (e.g. an old-style pickle)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:200] if text else ''}"


def _refused_globals(path: Path, exc: BaseException) -> list[str]:
    """The globals of ``path`` the safe loader would not build, read from the pickle's opcodes
    without running them; else the one torch's error names ("" when it names none)."""
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in _ALLOWED_NAMES]
    except Exception:  # noqa: BLE001 - not a zip checkpoint: fall back on the error text
        names = []
    if names:
        return names
    text = str(exc)
    if "GLOBAL" not in text and "add_safe_globals" not in text:  # e.g. "Unsupported operand": junk, not objects
        return []
    detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    return [detail[0][:160]] if detail else ["an object the safe loader does not build"]


def read_torch_file(path: str | os.PathLike[str], what: str = "hpekd checkpoint", *,
                    map_location: str | torch.device = "cpu", trust: bool = False) -> Any:
    """The one reader of a torch file in hpekd: ``torch.load`` with ``weights_only=True`` (plus
    :data:`NUMPY_RNG_GLOBALS`), so reading it runs no code. ``what`` names the file in errors. A
    file the safe loader refuses raises :class:`UnsafeFile` naming its objects and the upgrade
    command; ``trust=True`` (only ``hpekd checkpoint upgrade --trust``) unpickles anything."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} not found")
    if trust:  # the user vouched for this file: `hpekd checkpoint upgrade --trust`
        try:
            return torch.load(p, map_location=map_location, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any failure: not a torch file
            raise ValueError(f"{what} {str(p)!r} could not be read even unsafely ({_first_line(exc)})") from exc
    try:
        with torch.serialization.safe_globals(NUMPY_RNG_GLOBALS):
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(p, exc)
        if refused:
            raise UnsafeFile(
                f"{what} {str(p)!r} holds Python objects that hpekd does not load, since loading them could run "
                f"code ({', '.join(refused[:3])}); if it comes from an earlier hpekd or another source you trust, "
                f"convert it once: `{UPGRADE} {p} NEW.pt --trust`"
            ) from None
        raise ValueError(f"{str(p)!r} is not a readable {what} ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, text file, ...: "not ours"
        raise ValueError(f"{str(p)!r} is not a readable {what} ({_first_line(exc)})") from None


def _type(v: Any) -> str:
    return type(v).__name__


def _check_spec(spec: Any, bad: Any) -> None:
    if not isinstance(spec, Mapping):
        raise bad("model_spec", f"is a {_type(spec)}, expected a dict")
    missing = [k for k in SPEC_REQUIRED if k not in spec]
    if missing:
        raise bad(f"model_spec.{missing[0]}", f"is missing (a model_spec holds {', '.join(SPEC_REQUIRED)})")
    unknown = sorted(str(k) for k in spec if k not in SPEC_REQUIRED + SPEC_OPTIONAL)
    if unknown:
        raise bad("model_spec", f"has unknown key(s) {unknown}")
    if spec["backbone"] not in BACKBONES:
        raise bad("model_spec.backbone", f"is {spec['backbone']!r}, expected one of {BACKBONES}")
    sizes = spec["bin_sizes"]
    if (not isinstance(sizes, list | tuple) or not sizes
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in sizes)):
        raise bad("model_spec.bin_sizes", f"is {sizes!r}, expected a non-empty list of numbers")
    for key in ("regression", "feature_norm"):
        if key in spec and not isinstance(spec[key], bool):
            raise bad(f"model_spec.{key}", f"is {spec[key]!r}, expected true or false")
    if not isinstance(spec["theta"], int | float) or isinstance(spec["theta"], bool):
        raise bad("model_spec.theta", f"is {spec['theta']!r}, expected a number")
    try:
        ModelSpec.from_dict(dict(spec))
    except ValueError as exc:
        raise bad("model_spec", f"is not a valid architecture ({exc})") from None


def validate_checkpoint(state: Any, where: str) -> dict[str, Any]:
    """``state`` when it is an hpekd checkpoint; else a ``ValueError`` naming, in ``where`` (e.g.
    ``"checkpoint 'x.pt'"``), the first missing or wrong field. The one structural check."""

    def bad(field: str, problem: str) -> ValueError:
        return ValueError(f"{where} is not an hpekd checkpoint: field {field!r} {problem}")

    if not isinstance(state, dict):
        raise ValueError(f"{where} is not an hpekd checkpoint: it holds a {_type(state)}, not a dict with kind, "
                         "model_spec, model and input_size (train one with `hpekd train-teacher`)")
    if state.get("kind") not in KINDS:
        raise bad("kind", f"is {state['kind']!r}, expected one of {KINDS}" if "kind" in state else "is missing")
    for key in ("model_spec", "model", "input_size"):
        if key not in state:
            raise bad(key, "is missing")
    _check_spec(state["model_spec"], bad)
    model = state["model"]
    if not isinstance(model, Mapping) or not model:
        raise bad("model", f"is {'empty' if isinstance(model, Mapping) else 'a ' + _type(model)}, expected a dict "
                           "of tensors (a state dict)")
    for k, v in model.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise bad("model", f"entry {k!r} is a {_type(v)}, expected a tensor")
    size = state["input_size"]
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise bad("input_size", f"is {size!r}, expected [height, width] in pixels")
    epoch = state.get("epoch", 0)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise bad("epoch", f"is {epoch!r}, expected a count of finished epochs")
    if not isinstance(state.get("config", {}), Mapping):
        raise bad("config", f"is a {_type(state['config'])}, expected a dict")
    for key in ("optimizer", "scheduler"):
        if state.get(key) is not None and not isinstance(state[key], Mapping):
            raise bad(key, f"is a {_type(state[key])}, expected a dict (a state dict) or none")
    return state


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
    """An hpekd checkpoint, read as data (:func:`read_torch_file`) and checked
    (:func:`validate_checkpoint`); a ``ValueError`` naming the file and what is wrong otherwise."""
    state = read_torch_file(path, map_location=map_location)
    return validate_checkpoint(state, f"checkpoint {str(path)!r}")


def model_from_checkpoint(
    path_or_state: str | os.PathLike[str] | dict[str, Any], map_location: str | torch.device = "cpu"
) -> tuple[HeadPoseNet, dict[str, Any]]:
    if isinstance(path_or_state, dict):
        state = validate_checkpoint(path_or_state, "checkpoint")
    else:
        state = load_checkpoint(path_or_state, map_location)
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
    state = read_torch_file(p, "weights file")
    if isinstance(state, dict) and "model_spec" in state and "model" in state:
        validate_checkpoint(state, f"weights file {str(p)!r}")
        other = state["model_spec"]["backbone"]
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
