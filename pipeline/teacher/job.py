"""The teacher-label job (docs/design.md §5–6): the convolutional ensemble of a stage-1 checkpoint
over every training sample and V views, into a sharded Zarr store, on dask.distributed.

Fast by construction:

* a torch ``DataLoader`` (``loader_workers`` processes) reads each image ONCE and builds the
  V padded regions Z with one affine warp each (:func:`pipeline.core.geometry.crop`, ``pad=p``);
* the A crops are cut on the device as views of Z, normalised there and run in chunks of
  ``chunk`` crops (bf16 autocast + channels-last on CUDA) by :func:`pipeline.teacher.ensemble.ensemble_probs`;
* one DataLoader streams all rows of a task (a run of shards), so loading never stalls at a
  shard boundary; a writer thread (:mod:`pipeline.teacher.writer`) moves results to host
  memory, compresses and writes each finished shard and sets its flag while the next shard
  computes.

Distribution and resume: the unit of work is a shard (``shard_rows`` store rows). A dask
task owns a run of whole shards, writes each as one object and sets its ``done`` flag last.
A rerun skips shards whose flag is set. Everything is deterministic (fixed row order,
fixed batch composition per shard, keyed views, eval mode, fp32 on CPU), so a killed and
resumed run ends with the same bytes as an uninterrupted one, and N workers write the same
store as one. ``workers = 0`` runs the shards in this process (no dask). Which store is
written (resumed, rebuilt beside ``--out`` and swapped in, or rebuilt in place) is
:mod:`pipeline.teacher.target`'s rule; the network and the Z dataset come from
:mod:`pipeline.teacher.compute`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from pipeline.core import numerics
from pipeline.core.device import resolve_device
from pipeline.core.io import sha256_file
from pipeline.core.views import views_array
from pipeline.manifest.rows import OK, image_paths, labelled_mask, row_angles, row_boxes, row_ids, split_rows
from pipeline.manifest.schema import read_boxes
from pipeline.model.network import LABEL_HEAD
from pipeline.teacher import labelstore
from pipeline.teacher.compute import ZDataset, cached_model, loader_workers
from pipeline.teacher.encoding import Encoding
from pipeline.teacher.ensemble import ensemble_probs, ensemble_size, validate_ensemble
from pipeline.teacher.inputs import check_inputs
from pipeline.teacher.lease import Lease, new_lease
from pipeline.teacher.provenance import Bins, Ensemble, Manifest, TeacherInfo, Views, store_provenance
from pipeline.teacher.target import choose_target, finish_interrupted_swap, swap_in
from pipeline.teacher.writer import ShardWriter

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class TeacherLabelsConfig:
    """params.yaml section ``teacher_labels``.

    Output-defining: p, s, views, view_seed, flip_prob, max_angle, split, shard_rows,
    chunk_rows, encoding (:mod:`pipeline.teacher.encoding`). Performance only: batch_size, chunk, workers, loader_workers, device, amp,
    compile, threads, tasks_per_worker.
    """

    p: int
    s: int
    views: int
    view_seed: int
    flip_prob: float
    max_angle: float
    split: str
    shard_rows: int
    chunk_rows: int
    encoding: str  # float16 | uint8 | topK (e.g. top16): how the store holds the distributions
    batch_size: int  # samples per batch (each brings V regions Z → V·A crops)
    chunk: int  # crops per forward pass (0 = the whole batch)
    workers: int  # dask workers of a local cluster (0 = run in this process)
    loader_workers: int
    device: str  # auto | cpu | cuda
    amp: bool  # bf16 autocast on CUDA (CPU always runs fp32)
    compile: bool  # torch.compile the network (CUDA)
    threads: int  # torch CPU threads per worker (0 = cores / workers)
    tasks_per_worker: int  # dask tasks (runs of whole shards) per worker; more = finer balance

    def __post_init__(self) -> None:
        validate_ensemble(self.p, self.s)
        if self.views < 1:
            raise ValueError(f"teacher_labels.views={self.views} must be >= 1 (view 0 is the identity)")
        if self.batch_size < 1 or self.chunk < 0 or self.workers < 0 or self.loader_workers < 0 or self.tasks_per_worker < 1:
            raise ValueError("teacher_labels: need batch_size >= 1, chunk >= 0, workers >= 0, loader_workers >= 0, "
                             "tasks_per_worker >= 1")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"teacher_labels.device={self.device!r}: use auto, cpu or cuda")
        if not 0.0 <= self.flip_prob <= 1.0 or self.max_angle < 0:
            raise ValueError("teacher_labels: flip_prob must be in [0, 1] and max_angle >= 0")
        labelstore.Layout(1, 1, 1, self.shard_rows, self.chunk_rows)  # validates the shard shape
        Encoding(self.encoding, n_bins=1 << 16)  # the name; K against the teacher's Q in plan_job

    @property
    def A(self) -> int:
        return ensemble_size(self.p, self.s)


# ---------------------------------------------------------------------------- task (runs on a worker)

@dataclass(frozen=True)
class ShardTask:
    """A run of whole shards for one worker (picklable; no parquet read on workers).

    ``paths``/``boxes``/``views`` hold the rows of ``shards`` concatenated in order.
    """

    out: str
    checkpoint: str
    checkpoint_sha: str
    cfg: TeacherLabelsConfig
    shards: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...]  # store rows [a, b) of each shard
    paths: list[str]
    boxes: np.ndarray
    views: np.ndarray
    input_size: tuple[int, int]
    n_bins: int
    provenance_sha256: str = ""
    lease: Lease | None = None


def compute_shards(task: ShardTask) -> list[dict[str, Any]]:
    """Compute whole shards and write each (then its done flag). Runs on a dask worker.

    One DataLoader streams all rows of the task, so loading never stalls between shards;
    batches never cross a shard boundary (a shard's bytes do not depend on how shards were
    grouped into tasks). A writer thread (:class:`ShardWriter`) copies results to host memory
    and, once a shard is complete, compresses and writes it and sets its flag while the next
    shard computes.
    """
    cfg = task.cfg
    g = _open_for_writing(task)
    todo = _shards_to_compute(g, task)
    left = {k for k, *_ in todo}
    results: list[dict[str, Any]] = [{"shard": k, "computed": False, "rows": 0, "crops": 0}
                                     for k in task.shards if k not in left]
    if not todo:
        return results
    n_threads = _torch_threads(cfg.threads)
    if n_threads:
        torch.set_num_threads(n_threads)
    model, dev = cached_model(task.checkpoint, task.checkpoint_sha, cfg.device, cfg.compile)
    ds = ZDataset(task.paths, task.boxes, task.views, task.input_size, cfg.p)
    batches, owner = _shard_batches(todo, cfg.batch_size)
    nw = loader_workers(cfg.loader_workers)
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=batches, num_workers=nw, pin_memory=dev.type == "cuda",
        prefetch_factor=4 if nw else None,
    )
    V = cfg.views
    sizes = {k: b - a for k, a, b, _ in todo}
    with ShardWriter(g, sizes, V, task.n_bins, cfg.A, task.lease) as writer:
        for (k, off), zb in zip(owner, loader):  # zb: [B, V, H, W, 3] uint8
            writer.started(k)
            B = zb.shape[0]
            probs = ensemble_probs(
                model, zb.view(B * V, *zb.shape[2:]), task.input_size, cfg.p, cfg.s,
                head=LABEL_HEAD, chunk=cfg.chunk, device=dev, amp=cfg.amp,
            )
            writer.put(k, off, probs.view(B, V, 3, -1).to(torch.float16))
            if writer.failed:
                break
    writer.check()
    return results + writer.results


def _open_for_writing(task: ShardTask) -> zarr.Group:
    g = labelstore.open_store(task.out, mode="r+")
    # never write into a store whose provenance this job did not create or verify
    if task.provenance_sha256 and labelstore.provenance_sha256(g.attrs) != task.provenance_sha256:
        raise ValueError(f"label store {task.out!r} now holds another run's layout (provenance changed under this "
                         "job): stopped before writing")
    if task.lease is not None:
        task.lease.check()
    return g


def _shards_to_compute(g: zarr.Group, task: ShardTask) -> list[tuple[int, int, int, int]]:
    """(shard, first store row, end row, offset of its first row in the task) of every shard of
    the task not yet done and intact."""
    ok = labelstore.verified_shards(g, task.out, task.shards)
    todo, base = [], 0
    for k, (a, b) in zip(task.shards, task.bounds):
        if not ok[k]:
            todo.append((k, a, b, base))
        base += b - a
    return todo


def _shard_batches(todo: list[tuple[int, int, int, int]], batch_size: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Per-shard batches (task rows) and the (shard, first row in the shard) of each: a fixed
    composition whatever the grouping of shards into tasks."""
    batches, owner = [], []
    for k, a, b, off in todo:
        for i in range(0, b - a, batch_size):
            batches.append(list(range(off + i, off + min(b - a, i + batch_size))))
            owner.append((k, i))
    return batches, owner


# ---------------------------------------------------------------------------- plan

@dataclass
class JobPlan:
    """``out`` is the store being written: the requested path, or the store built beside it
    (``final`` is then the requested path, swapped in when the new store is complete)."""

    out: str
    checkpoint: str
    checkpoint_sha: str
    attrs: dict[str, Any]
    layout: labelstore.Layout
    paths: list[str]
    boxes: np.ndarray
    views: np.ndarray
    input_size: tuple[int, int]
    pending: list[int] = field(default_factory=list)
    resumed: bool = False
    final: str = ""

    def done_shards(self) -> list[int]:
        """Shards intact in the store before this run (kept by a resume)."""
        return [k for k in range(self.layout.n_shards) if k not in self.pending]

    def task(self, cfg: TeacherLabelsConfig, shards: list[int], lease: Lease | None = None) -> ShardTask:
        """The task computing ``shards``, writing under ``lease`` (checked before every write)."""
        bounds = tuple(self.layout.shard_range(k) for k in shards)
        idx = np.concatenate([np.arange(a, b) for a, b in bounds])
        return ShardTask(self.out, self.checkpoint, self.checkpoint_sha, cfg, tuple(shards), bounds,
                         [self.paths[i] for i in idx], self.boxes[idx], self.views[idx], self.input_size,
                         self.layout.n_bins, labelstore.provenance_sha256(self.attrs), lease)


def plan_job(cfg: TeacherLabelsConfig, checkpoint: str, boxes: str, out: str) -> JobPlan:
    """Hash inputs, choose and check the target store, check the inputs of every shard still to
    compute, and only then create the layout (a new store) — nothing is written before that."""
    spec, input_size, kind = _read_teacher(checkpoint)
    grid = spec.grids[LABEL_HEAD]
    rows = _training_rows(cfg, boxes)
    layout = labelstore.Layout(len(rows.rows), cfg.views, grid.count, cfg.shard_rows, cfg.chunk_rows)
    ck_sha = sha256_file(checkpoint)
    attrs = store_provenance(
        teacher=TeacherInfo(ck_sha, kind, spec.to_dict(), spec.to_dict().get("backbone"), LABEL_HEAD),
        bins=Bins(grid.size, grid.theta, grid.count), ensemble=Ensemble(cfg.p, cfg.s, ensemble_size(cfg.p, cfg.s)),
        input_size=input_size,
        manifest=Manifest(sha256_file(boxes), Path(boxes).name, cfg.split, OK, rows.n_labelled, rows.n_unlabelled),
        views=Views(cfg.view_seed, cfg.views, cfg.flip_prob, cfg.max_angle, "identity", ["flip", "angle_deg"]),
        layout=layout.to_dict(), encoding=Encoding(cfg.encoding, grid.count).to_dict(),
        package=labelstore.package_version(),
    ).to_attrs()
    log.info("teacher labels for %d %s row(s): %d labelled, %d unlabelled", len(rows.rows), cfg.split,
             attrs["manifest"]["labelled"], attrs["manifest"]["unlabelled"])
    out = str(out)
    finish_interrupted_swap(out, attrs)
    target, resumed = choose_target(out, attrs)
    pending = _pending_shards(target, resumed, layout)
    todo = np.concatenate([np.arange(*layout.shard_range(k)) for k in pending]) if pending else np.arange(0)
    check_inputs([rows.paths[i] for i in todo], rows.boxes[todo], [rows.sample_ids[i] for i in todo],
                 f"boxes file {boxes!r}")
    if not resumed:
        labelstore.create_layout(target, attrs, rows.sample_ids, rows.rows, rows.views)
    else:
        attrs = dict(labelstore.open_store(target).attrs)
        log.info("resuming %s: %d of %d shards already done", target, layout.n_shards - len(pending), layout.n_shards)
    return JobPlan(target, str(checkpoint), ck_sha, attrs, layout, rows.paths, rows.boxes, rows.views, input_size,
                   pending, resumed, out)


def _read_teacher(checkpoint: str) -> tuple[Any, tuple[int, int], str]:
    """(model spec, input size, kind) of a checkpoint with the bin-1 head the labels come from."""
    from pipeline.model.checkpoint import input_size_of, load_checkpoint
    from pipeline.model.network import ModelSpec

    state = load_checkpoint(checkpoint)
    spec = ModelSpec.from_dict(state["model_spec"])
    if LABEL_HEAD not in spec.grids:
        raise ValueError(f"checkpoint {checkpoint!r} has no bin-1 head (heads: {list(spec.grids)}); "
                         "the teacher labels are bin-1 distributions")
    return spec, input_size_of(state, repr(checkpoint)), str(state["kind"])


@dataclass(frozen=True)
class _Rows:
    """The manifest rows the job labels, in store order."""

    rows: np.ndarray  # index of each in the boxes file
    sample_ids: list[str]
    paths: list[str]  # absolute image paths
    boxes: np.ndarray  # float64 [N, 4] x1, y1, x2, y2
    views: np.ndarray  # [N, V, 2] (flip, angle°)
    n_labelled: int
    n_unlabelled: int


def _training_rows(cfg: TeacherLabelsConfig, boxes: str) -> _Rows:
    df = read_boxes(boxes)
    rows = split_rows(df, cfg.split)
    if rows.size == 0:
        raise ValueError(f"boxes file {boxes!r} has no usable rows with split={cfg.split!r} and status ok")
    sample_ids = row_ids(df, rows)
    paths = image_paths(df, rows, absolute=True)  # the dask tasks may run in another working directory
    views = views_array(sample_ids, cfg.views, cfg.view_seed, cfg.flip_prob, cfg.max_angle,
                        poses=row_angles(df, rows))  # no rotation that leaves ±99° (unlabelled: any)
    labelled = labelled_mask(df)[rows]
    return _Rows(rows, sample_ids, paths, row_boxes(df, rows), views, int(labelled.sum()), int((~labelled).sum()))


def _pending_shards(target: str, resumed: bool, layout: labelstore.Layout) -> list[int]:
    """Shards still to compute: all of a new store; those not intact in a resumed one (after
    removing the temporaries a killed writer left)."""
    if not resumed:
        return list(range(layout.n_shards))
    labelstore.remove_partial_files(target)
    ok = labelstore.verified_shards(labelstore.open_store(target), target)
    return [k for k in range(layout.n_shards) if not ok[k]]


# ---------------------------------------------------------------------------- run

@dataclass
class JobResult:
    out: str
    computed: list[int]
    skipped: list[int]
    rows: int
    crops: int
    seconds: float
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _progress(total_rows: int, done_rows: int):  # -> tqdm
    from tqdm import tqdm

    return tqdm(total=total_rows, initial=done_rows, unit="row", desc="teacher labels",
                disable=None, dynamic_ncols=True)


def run_teacher_labels(
    cfg: TeacherLabelsConfig,
    checkpoint: str,
    boxes: str,
    out: str,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    break_lease: bool = False,
) -> JobResult:
    """Build (or finish) the label store ``out`` under a lease (one writer at a time).
    Returns which shards this call computed.

    The lease is taken before planning (planning may swap in, clean or create the store) and,
    once the plan knows the provenance the job writes, rewritten to name it; the tasks carry
    that lease and check it before every write. A killed run leaves its lease behind: the next
    run on this machine takes it over (its process is gone) and resumes.
    """
    t0 = time.perf_counter()
    lease = new_lease(str(out), "")
    lease.acquire(break_lease=break_lease)
    try:
        plan = plan_job(cfg, checkpoint, boxes, str(out))
        lease = lease.describe(labelstore.provenance_sha256(plan.attrs))
        n_workers = cfg.workers if workers is None else workers
        results = _compute(cfg, plan, lease, n_workers, scheduler, client)
        return _finish(plan, results, lease, t0)
    finally:
        lease.release()


def _compute(cfg: TeacherLabelsConfig, plan: JobPlan, lease: Lease, n_workers: int, scheduler: str | None,
             client: Any) -> list[dict[str, Any]]:
    """Compute the pending shards: on dask when a client, a scheduler or workers are given,
    else in this process. One record per shard of the tasks (see :func:`compute_shards`)."""
    lay = plan.layout
    done = plan.done_shards()
    bar = _progress(lay.n_rows, sum(lay.shard_range(k)[1] - lay.shard_range(k)[0] for k in done))
    try:
        if not plan.pending:
            return []
        if client is not None or scheduler or n_workers > 0:
            return _run_dask(cfg, plan, lease, n_workers, scheduler, client, bar)
        results = compute_shards(plan.task(cfg, plan.pending, lease))
        bar.update(sum(r["rows"] for r in results))
        bar.set_postfix(shards=f"{len(done) + len(results)}/{lay.n_shards}")
        return results
    finally:
        bar.close()


def _finish(plan: JobPlan, results: list[dict[str, Any]], lease: Lease, t0: float) -> JobResult:
    """Check every shard is done, swap a store built beside ``--out`` in, and summarise."""
    flags = labelstore.done_flags(labelstore.open_store(plan.out))
    computed = sorted(r["shard"] for r in results if r["computed"])
    skipped = sorted(set(plan.done_shards()) | {r["shard"] for r in results if not r["computed"]})
    res = JobResult(plan.out, computed, skipped, sum(r["rows"] for r in results),
                    sum(r["crops"] for r in results), time.perf_counter() - t0, bool(flags.all()))
    if not res.complete:
        raise RuntimeError(f"teacher-label store {plan.out} incomplete after the run: shards "
                           f"{np.flatnonzero(flags == 0).tolist()[:10]} not done")
    if plan.out != plan.final:
        lease.check()
        swap_in(plan.out, plan.final)
        res.out = plan.final
    log.info("teacher labels: %d shards computed, %d skipped, %d crops in %.1f s",
             len(computed), len(skipped), res.crops, res.seconds)
    return res


# ---------------------------------------------------------------------------- dask

def _run_dask(cfg: TeacherLabelsConfig, plan: JobPlan, lease: Lease, n_workers: int, scheduler: str | None, client: Any,
              bar: Any) -> list[dict[str, Any]]:
    """Compute the pending shards as ``tasks_per_worker`` dask tasks per worker, on ``client``, on
    the scheduler at ``scheduler``, or on a local cluster of ``n_workers`` started here."""
    from distributed import Client, as_completed

    cluster = None
    own_client = client is None
    try:
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = start_local_cluster(max(1, n_workers), cfg.device, cfg.threads)
                client = Client(cluster)
        token = uuid.uuid4().hex[:8]
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
        tasks = cfg.tasks_per_worker * n_workers
        futures = [
            client.submit(compute_shards, plan.task(cfg, run, lease), key=f"teacher-shards-{run[0]}-{token}", pure=False)
            for run in group_shards(plan.pending, tasks)
        ]
        results = []
        done_shards = plan.layout.n_shards - len(plan.pending)
        for fut in as_completed(futures):
            rs = fut.result()
            results.extend(rs)
            done_shards += len(rs)
            bar.update(sum(r["rows"] for r in rs))
            bar.set_postfix(shards=f"{done_shards}/{plan.layout.n_shards}")
        return results
    finally:
        if own_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def group_shards(pending: list[int], n_tasks: int) -> list[list[int]]:
    """Split pending shards into ``n_tasks`` contiguous runs (one per worker)."""
    n_tasks = max(1, min(n_tasks, len(pending)))
    per = -(-len(pending) // n_tasks)
    return [pending[i : i + per] for i in range(0, len(pending), per)]


def _torch_threads(configured: int) -> int:
    """Torch threads of a teacher task: under the pinned numerics the one fixed count of the
    whole pipeline (the bytes depend on it), else ``teacher_labels.threads`` (0 = the default)."""
    if numerics.mode() == "pinned":
        if configured and configured != numerics.threads():
            log.info("teacher_labels.threads=%d ignored: pinned numerics run %d threads (%s=native to choose)",
                     configured, numerics.threads(), numerics.SWITCH)
        return numerics.threads()
    return configured


def start_local_cluster(n_workers: int, device: str, threads: int = 0):  # -> distributed.SpecCluster
    """One dask worker process per device (``CUDA_VISIBLE_DEVICES`` per worker on GPU)."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    # DataLoader workers are child processes: dask worker processes must not be daemonic.
    dask.config.set({"distributed.worker.daemon": False})
    gpu = resolve_device(device).type == "cuda"
    n_gpu = torch.cuda.device_count() if gpu else 0
    per = _torch_threads(threads) or max(1, (os.cpu_count() or 1) // n_workers)
    workers = {}
    for i in range(n_workers):
        env = {"OMP_NUM_THREADS": str(per), "MKL_NUM_THREADS": str(per)}
        if gpu:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpu)
        workers[f"teacher-{i}"] = {"cls": Nanny, "options": {"nthreads": 1, "env": env, "name": f"teacher-{i}"}}
    return SpecCluster(
        workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
        silence_logs=logging.WARNING, name="hpekd-teacher",
    )
