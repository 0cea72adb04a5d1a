"""The writer thread of a teacher-label task: it copies each batch of distributions to host
memory and, once a shard is complete, writes it whole and sets its done flag
(:func:`pipeline.teacher.labelstore.write_shard`), while the next batches compute.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

import numpy as np
import torch
import zarr

from pipeline.teacher import labelstore
from pipeline.teacher.lease import Lease

log = logging.getLogger(__name__)


class ShardWriter:
    """``with ShardWriter(...) as w:`` start the thread; :meth:`put` each batch; on leaving the
    block the thread drains its queue and stops; :meth:`check` then raises the thread's first
    error, or names the shards not all of whose rows arrived.

    ``sizes``: rows of each shard to write, keyed by shard, in compute order. ``n_crops``: crops
    per view (A), for the record of each written shard (:attr:`results`).
    """

    def __init__(self, g: zarr.Group, sizes: dict[int, int], n_views: int, n_bins: int, n_crops: int,
                 lease: Lease | None) -> None:
        self.g, self.sizes, self.lease = g, sizes, lease
        self.n_views, self.n_bins, self.n_crops = n_views, n_bins, n_crops
        self.results: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._bufs: dict[int, np.ndarray] = {}
        self._filled = dict.fromkeys(sizes, 0)
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._t_start = {next(iter(sizes)): time.perf_counter()}
        self._thread = threading.Thread(target=self._loop, name="teacher-writer", daemon=True)

    def __enter__(self) -> ShardWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()

    def started(self, k: int) -> None:
        """Shard ``k``'s compute has begun (its time is logged from here)."""
        self._t_start.setdefault(k, time.perf_counter())

    def put(self, k: int, off: int, probs: torch.Tensor) -> None:
        """Rows ``off``.. of shard ``k`` (float16 [B, V, 3, Q], any device)."""
        self._queue.put((k, off, probs))

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]
        missing = [k for k in self.sizes if self._filled[k] != self.sizes[k]]
        if missing:
            raise RuntimeError(f"shards {missing}: not all rows were computed")

    def _loop(self) -> None:  # host copies, shard writes and done flags overlap the compute
        while (item := self._queue.get()) is not None:
            if self.errors:
                continue
            try:
                self._add(*item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the task
                self.errors.append(exc)

    def _add(self, k: int, off: int, t: torch.Tensor) -> None:
        buf = self._bufs.setdefault(k, np.empty((self.sizes[k], self.n_views, 3, self.n_bins), dtype=np.float16))
        arr = t.cpu().numpy()
        buf[off : off + arr.shape[0]] = arr
        self._filled[k] += arr.shape[0]
        if self._filled[k] == self.sizes[k]:
            self._write(k)

    def _write(self, k: int) -> None:
        labelstore.write_shard(self.g, k, self._bufs.pop(k), lease=self.lease)
        dt = time.perf_counter() - self._t_start.get(k, time.perf_counter())
        rows = self.sizes[k]
        crops = rows * self.n_views * self.n_crops
        self.results.append({"shard": k, "computed": True, "rows": rows, "crops": crops, "seconds": dt,
                             "pid": os.getpid()})
        log.info("shard %d: %d rows, %d crops in %.1f s", k, rows, crops, dt)
