"""Where a training process runs: single process or torchrun DDP (:class:`Runtime`, set up and torn
down by :func:`training_runtime`, the one way both stages enter it), the global RNG seed and
states, moving a batch to the device, and wrapping/unwrapping a model for DDP."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline.core.device import resolve_device
from pipeline.core.images import normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"


def setup_runtime(device: str = "auto") -> Runtime:
    """Single process, or torchrun DDP when ``WORLD_SIZE > 1`` (``RANK``/``LOCAL_RANK`` from env)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Runtime(resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    log.info("DDP rank %d/%d on %s", rank, world, dev)
    return Runtime(dev, rank, world, local)


@contextmanager
def training_runtime(device: str = "auto") -> Iterator[Runtime]:
    """The runtime of one training run: :func:`setup_runtime` on entry; on exit the DDP process
    group is destroyed if this call created it (a group that already existed, e.g. the caller's,
    is left alone)."""
    had_group = dist.is_available() and dist.is_initialized()
    rt = setup_runtime(device)
    try:
        yield rt
    finally:
        if rt.distributed and not had_group and dist.is_initialized():
            dist.destroy_process_group()


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prepare_batch(batch: Mapping[str, torch.Tensor], rt: Runtime) -> dict[str, torch.Tensor]:
    """Move a collated batch to the device; ``image`` → normalised float (channels-last on CUDA)."""
    out = {k: v.to(rt.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    image = normalize(out["image"])
    if rt.device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    out["image"] = image
    return out


def wrap_ddp(model: nn.Module, rt: Runtime) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun DDP, else ``model`` itself."""
    if not rt.distributed:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.distributed:
        dist.all_reduce(t)
    return t


__all__ = [
    "Runtime", "all_reduce", "prepare_batch", "restore_rng_state", "rng_state", "set_seed", "setup_runtime",
    "training_runtime", "unwrap", "wrap_ddp",
]
