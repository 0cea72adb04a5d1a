"""One writer at a time on a label store: a lease object next to the store (docs/design.md §6).

The lease is a small JSON file ``<parent>/.<store name>.lease`` (beside the store, so it is
never part of the DVC-tracked output and survives the store being rebuilt and swapped). It
is created with create-exclusive semantics (``open(..., "xb")``: ``O_CREAT | O_EXCL`` on a
local path, the filesystem's exclusive create on fsspec stores that have one) and holds the
job id, host, pid, start time and the hash of the provenance the job writes. Writers check it
before every shard write and before setting every ``done`` flag, so a job whose lease was
broken stops before it writes anything more.

Object stores without an exclusive create fall back to write-then-read-back: the lease is
written only when none exists, then read again; if another job's id is found the job
refuses. This narrows the race to the moment of creation; run one job per store there.

A lease whose holder is gone (same host and its pid no longer alive) is taken over
automatically; any other held lease is refused with a message naming the holder, unless the
job was started with ``--break-lease``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec

from pipeline.core.io import pid_alive

log = logging.getLogger(__name__)


def lease_path(store: str) -> str:
    """``<parent>/.<name>.lease`` for a store path or URL."""
    store = str(store).rstrip("/")
    head, _, name = store.rpartition("/")
    return f"{head}/.{name}.lease" if head else f".{name}.lease"



@dataclass(frozen=True)
class Lease:
    """A held (or to be taken) lease; picklable, so dask workers can check it."""

    store: str
    job_id: str
    provenance_sha256: str

    @property
    def path(self) -> str:
        return lease_path(self.store)

    def _fs(self) -> tuple[Any, str]:
        fs, p = fsspec.core.url_to_fs(self.path)
        return fs, p

    def holder(self) -> dict[str, Any] | None:
        """The lease record on storage, or None when no lease is held."""
        fs, p = self._fs()
        try:
            with fs.open(p, "rb") as f:
                return json.loads(f.read().decode() or "{}")
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {"job_id": "?", "host": "?", "pid": -1, "started": "?", "unreadable": True}

    def _record(self) -> bytes:
        rec = {"job_id": self.job_id, "host": socket.gethostname(), "pid": os.getpid(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance_sha256": self.provenance_sha256}
        return (json.dumps(rec, sort_keys=True) + "\n").encode()

    def _create(self) -> bool:
        """Create the lease exclusively; False if one exists."""
        fs, p = self._fs()
        parent = p.rpartition("/")[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        try:
            with fs.open(p, "xb") as f:
                f.write(self._record())
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError, TypeError):
            # no exclusive create on this filesystem: write-then-read-back (module docstring)
            if fs.exists(p):
                return False
            with fs.open(p, "wb") as f:
                f.write(self._record())
            return (self.holder() or {}).get("job_id") == self.job_id

    def acquire(self, break_lease: bool = False) -> None:
        if self._create():
            return
        held = self.holder() or {}
        host, pid = held.get("host"), int(held.get("pid", -1) or -1)
        stale = host == socket.gethostname() and pid > 0 and not pid_alive(pid)
        who = (f"job {held.get('job_id')} (host {host}, pid {pid}, started {held.get('started')})"
               if not held.get("unreadable") else "an unreadable lease")
        if not (stale or break_lease):
            raise ValueError(
                f"label store {self.store!r} is being written by {who}: wait for that job to finish; if it is gone "
                f"(killed on another machine), run again with --break-lease (lease file {self.path})"
            )
        log.warning("taking over the lease on %s from %s (%s)", self.store, who,
                    "its process is gone" if stale else "--break-lease")
        fs, p = self._fs()
        fs.rm(p)
        if not self._create():
            raise ValueError(f"label store {self.store!r}: another job took the lease while it was being broken")

    def check(self) -> None:
        """Raise unless this job still holds the lease (called before every write)."""
        held = self.holder()
        if held is None or held.get("job_id") != self.job_id:
            who = "nobody" if held is None else f"job {held.get('job_id')} (host {held.get('host')}, pid {held.get('pid')})"
            raise ValueError(
                f"label store {self.store!r}: this job ({self.job_id}) no longer holds the lease (now {who}); "
                "stopped before writing"
            )

    def describe(self, provenance_sha256: str) -> Lease:
        """Record the provenance this job writes in the lease it holds; returns the new lease."""
        self.check()
        new = Lease(self.store, self.job_id, provenance_sha256)
        fs, p = self._fs()
        with fs.open(p, "wb") as f:
            f.write(new._record())
        return new

    def release(self) -> None:
        held = self.holder()
        if held is not None and held.get("job_id") == self.job_id:
            fs, p = self._fs()
            fs.rm(p)


def new_lease(store: str, provenance_sha256: str) -> Lease:
    return Lease(str(store), uuid.uuid4().hex[:12], provenance_sha256)
