"""DataLoader construction with reproducible, resumable, DDP-aware ordering.

:class:`EpochSampler` yields ``(epoch, position)`` pairs: the order is a pure function of
``(seed, epoch)`` (shuffled for training, sequential otherwise), sharded by rank like
``DistributedSampler`` (padded so every rank has the same count), and the epoch travels
with each index so persistent workers (which keep their own copy of the dataset) still apply
the right epoch's augmentation. Together with the per-sample generators of
:func:`pipeline.data.transforms.sample_rng`, a resumed run sees exactly the batches an
uninterrupted run would have seen, whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler):
    def __init__(
        self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = True
    ) -> None:
        if n <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 0x5A3]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.world_size > 1:
            if self.pad:
                total = math.ceil(self.n / self.world_size) * self.world_size
                order = np.concatenate([order, order[: total - self.n]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, int(i)) for i in self.order()])

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.pad:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))


def _worker_init(_: int) -> None:
    # each worker decodes/warps on one core; randomness comes from per-sample generators.
    # No cv2.setNumThreads here: in a forked worker it can deadlock on the parent's OpenCV
    # thread-pool lock (seen in test_loader_workers_give_the_same_batches).
    torch.set_num_threads(1)


# 9 parameters, keyword-only after the dataset and the batch size: each is one knob of the
# sampler (train, seed, rank, world_size: as EpochSampler takes them) or of the DataLoader
# (workers, pin_memory, drop_last) that its callers set by name; a record would only mirror them.
def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    drop_last: bool | None = None,
) -> tuple[DataLoader, EpochSampler]:
    """DataLoader over ``dataset`` (indexable with ``(epoch, i)``) and its sampler.

    Call ``sampler.set_epoch(e)`` before iterating epoch ``e``. ``train`` shuffles and drops
    the last incomplete batch when the (per-rank) dataset is larger than a batch (a batch of
    one breaks BatchNorm); evaluation keeps every sample and does not pad across ranks.
    Workers are persistent and prefetch; ``pin_memory`` for CUDA.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size!r} must be >= 1")
    sampler = EpochSampler(len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train)
    if drop_last is None:
        drop_last = train and len(sampler) > batch_size
    kwargs: dict = {}
    if workers > 0:
        kwargs = dict(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # a private generator: the loader never consumes the global torch RNG
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    return loader, sampler
