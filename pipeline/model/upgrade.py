"""``hpekd checkpoint upgrade OLD NEW --trust``: rewrite a torch file that the safe loader refuses
(a checkpoint of an earlier hpekd, or a state dict pickled with Python objects) as plain data.

This is the one place hpekd loads a file with ``weights_only=False``, which can run any code the
file holds; it does so only when the user passes ``trust=True`` (``--trust``), vouching for where
the file came from. Every value is converted to plain data (:func:`plain`: tensors, dicts, lists,
tuples, strings, numbers; numpy scalars and arrays to numbers and lists, paths to strings), an
hpekd checkpoint is checked (:func:`pipeline.model.checkpoint.validate_checkpoint`) and rebuilt by
the one checkpoint builder, and the written file is read back with the safe loader before the
command reports success.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from pipeline.core.io import atomic_path
from pipeline.model.checkpoint import (
    UPGRADE,
    checkpoint_state,
    load_checkpoint,
    model_from_checkpoint,
    read_torch_file,
    save_checkpoint,
    validate_checkpoint,
)

log = logging.getLogger(__name__)

# the checkpoint_state arguments; every other key of an old checkpoint is kept as an extra
_BUILDER_KEYS = ("kind", "model_spec", "model", "optimizer", "scheduler", "epoch", "config", "input_size")


def plain(value: Any, field: str = "") -> Any:
    """``value`` as data the safe loader reads; a ``ValueError`` naming ``field`` for a value
    with no plain form (an arbitrary object)."""
    if value is None or type(value) in (bool, int, float, str, bytes) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass, pickled as numpy's
        return plain(value.item(), field)
    if isinstance(value, enum.Enum):
        return plain(value.value, field)
    for base in (bool, int, float, str, bytes):  # other subclasses (e.g. a str enum's value) as the base type
        if isinstance(value, base):
            return base(value)
    if isinstance(value, np.ndarray):
        if type(value) is np.ndarray and value.dtype == np.uint32:  # numpy's RNG key: allowed (NUMPY_RNG_GLOBALS)
            return value
        if value.dtype.kind in "biuf":
            return value.tolist()
    elif isinstance(value, PurePath):
        return str(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value), field)
    elif isinstance(value, Mapping):
        return {plain(k, field): plain(v, f"{field}.{k}" if field else str(k)) for k, v in value.items()}
    elif isinstance(value, tuple):
        return tuple(plain(v, f"{field}[{i}]") for i, v in enumerate(value))
    elif isinstance(value, list | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v, f"{field}[{i}]") for i, v in enumerate(items)]
    raise ValueError(f"field {field or '(top level)'!r} holds a {type(value).__module__}.{type(value).__qualname__}, "
                     "which has no plain-data form; hpekd cannot convert this file")


def upgrade_checkpoint(old: str | os.PathLike[str], new: str | os.PathLike[str], *, trust: bool) -> dict[str, Any]:
    """Read ``old`` unsafely (only with ``trust``), write it to ``new`` as plain data and read
    ``new`` back safely. An hpekd checkpoint goes through :func:`checkpoint_state`; a state dict of
    tensors is written as a dict of tensors. Returns a summary (kind, keys, file names)."""
    if not trust:
        raise ValueError(f"refusing to load {str(old)!r} unsafely: loading a pickle can run any code it holds; pass "
                         "--trust only if you trust where the file came from")
    if os.path.abspath(old) == os.path.abspath(new):
        raise ValueError(f"NEW must differ from OLD ({str(old)!r}): the old file is kept as it was")
    state = read_torch_file(old, "file", trust=True)
    where = f"checkpoint {str(old)!r}"
    try:
        state = plain(state)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if isinstance(state, dict) and "model_spec" in state:
        state = validate_checkpoint(state, where)
        model, _ = model_from_checkpoint(state)
        extra = {k: v for k, v in state.items() if k not in _BUILDER_KEYS}
        out = checkpoint_state(state["kind"], model, state["input_size"], epoch=state.get("epoch", 0),
                               config=state.get("config"), optimizer=state.get("optimizer"),
                               scheduler=state.get("scheduler"), **extra)
        save_checkpoint(new, out)
        load_checkpoint(new)  # what was written loads with the safe loader
        summary = {"kind": out["kind"], "backbone": out["model_spec"]["backbone"], "epoch": out["epoch"]}
    elif isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        with atomic_path(new, ".pt") as tmp, open(tmp, "wb") as f:
            torch.save({str(k): v for k, v in state.items()}, f)
        read_torch_file(new, "weights file")
        summary = {"kind": "state_dict", "tensors": len(state)}
    else:
        raise ValueError(f"{str(old)!r} holds neither an hpekd checkpoint (a dict with model_spec) nor a state dict "
                         f"of tensors (it holds a {type(state).__name__}); there is nothing to upgrade")
    log.info("%s: wrote %s as plain data (%s)", UPGRADE, new, summary)
    return {"old": str(old), "new": str(new), **summary}


__all__ = ["plain", "upgrade_checkpoint"]
