"""Where a training process runs: single process or torchrun DDP (:class:`Runtime`), the global
RNG seed and states, and moving a batch to the device."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
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


def teardown_runtime(rt: Runtime) -> None:
    """Destroy the process group that :func:`setup_runtime` created under torchrun."""
    if rt.distributed and dist.is_initialized():
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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _all_reduce(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.distributed:
        dist.all_reduce(t)
    return t
