"""The compute pieces of a convolutional-ensemble pass over images: the network
loaded once per process, the dataset of padded regions Z and how many loader processes build
them. Shared by the teacher-label job and the (p, s) ensemble grid.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import torch

from pipeline.core.decode import read_crops
from pipeline.core.device import resolve_device
from pipeline.core.views import view_from_row

log = logging.getLogger(__name__)

_MODEL_CACHE: dict[tuple, tuple[torch.nn.Module, torch.device]] = {}


def cached_model(checkpoint: str, sha: str, device: str, compile_model: bool) -> tuple[torch.nn.Module, torch.device]:
    """The teacher network, loaded once per process (dask worker) and device."""
    from pipeline.model.checkpoint import model_from_checkpoint

    key = (sha, device, compile_model)
    if key not in _MODEL_CACHE:
        dev = resolve_device(device)
        model, _ = model_from_checkpoint(checkpoint)
        model.eval().to(dev)
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if compile_model:
            model = torch.compile(model)
        _MODEL_CACHE[key] = (model, dev)
        log.info("loaded teacher %s on %s (pid %d)", Path(checkpoint).name, dev, os.getpid())
    return _MODEL_CACHE[key]


class ZDataset(torch.utils.data.Dataset):
    """Item i: uint8 [V, h+2p, w+2p, 3], the regions Z of all views of one sample."""

    def __init__(self, paths: list[str], boxes: np.ndarray, views: np.ndarray, size: tuple[int, int], p: int):
        self.paths, self.boxes, self.views, self.size, self.p = paths, boxes, views, size, p

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        # one decode for all V views, at reduced size when the box allows (as the student reads it)
        zs = read_crops(self.paths[i], self.boxes[i], self.size, [view_from_row(v) for v in self.views[i]], pad=self.p)
        return torch.from_numpy(np.stack(zs))


def loader_workers(n: int) -> int:
    """The DataLoader processes that build Z here: ``n``, or 0 in a daemonic process (which
    cannot start children)."""
    if n and multiprocessing.current_process().daemon:
        log.warning("running in a daemonic process (dask worker with distributed.worker.daemon=True): "
                    "building Z in this process instead of %d loader workers", n)
        return 0
    return n
