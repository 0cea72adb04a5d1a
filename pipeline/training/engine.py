"""The shared training engine of stage 1 (teacher) and stage 2 (student).

Engine (torchvision-references style), used by ``hpekd train-teacher`` and by the student:

- :func:`train_one_epoch` / :func:`evaluate` / :func:`fit` (build the loaders, then the epoch loop);
- the model is a :class:`pipeline.model.network.HeadPoseNet`; the stage plugs in
  ``loss_fn(outputs, batch) -> (loss, parts)`` (``outputs`` = the model's forward dict,
  ``batch`` = the collated dataset dict with every tensor already on the device, ``image``
  normalised float) and ``predict_fn(outputs) -> [B, 3]`` degrees for evaluation;
- data comes from :class:`pipeline.data.datasets.PoseDataset`-like datasets (items are dicts
  with ``image`` uint8 [3, h, w] and ``target`` float32 [3]; indexable with ``(epoch, i)``);
- bf16 autocast + channels-last on CUDA, fp32 on CPU; torchrun DDP when ``WORLD_SIZE > 1``
  (nccl on CUDA, gloo on CPU), single process otherwise (:mod:`pipeline.training.runtime`);
  rank 0 alone writes;
- a checkpoint after every epoch, atomically (model, optimizer, scheduler, epoch, config,
  RNG states, metric history); ``TrainingRun.resume`` continues exactly: the data order and the
  augmentation are pure functions of (seed, epoch, row), and the RNG states are restored,
  so 1 epoch + resume 1 epoch gives the same weights as 2 epochs straight;
- per-epoch metrics for DVC: a JSON (final and best) and a CSV plot file
  (:mod:`pipeline.training.outputs`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from pipeline.core.angles import ANGLES
from pipeline.data.loader import make_loader
from pipeline.model.checkpoint import checkpoint_state, load_checkpoint, load_model_state, save_checkpoint
from pipeline.model.network import HeadPoseNet
from pipeline.training.config import EngineConfig
from pipeline.training.outputs import RunPaths, write_epoch_csv, write_metrics
from pipeline.training.runtime import Runtime, all_reduce, prepare_batch, restore_rng_state, rng_state, unwrap, wrap_ddp

log = logging.getLogger(__name__)

LossFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
PredictFn = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


# ----------------------------------------------------------------------------- epoch loops


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    rt: Runtime,
    epoch: int,
    epochs: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over ``loader``; returns the sample-weighted mean of each loss part, plus
    ``images_per_s``. ``loss_fn`` gets the forward dict and the on-device batch."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), dtype=torch.float64, device=rt.device)
    start = time.perf_counter()
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{epochs or '?'}", leave=False, dynamic_ncols=True,
        disable=not (progress and rt.is_main),
    )
    for step, raw in enumerate(bar):
        batch = prepare_batch(raw, rt)
        with torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            outputs = model(batch["image"])
        loss, parts = loss_fn(outputs, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {step}: lower lr?")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = batch["image"].shape[0]
        count += n
        for k, v in parts.items():
            sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64, device=rt.device)) + v.detach().double() * n
        if step % 10 == 0 and bar.disable is False:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    elapsed = time.perf_counter() - start
    all_reduce(count, rt)
    result = {k: float(all_reduce(v, rt) / count) for k, v in sorted(sums.items())}
    result["images_per_s"] = float(count) / max(elapsed, 1e-9)
    return result


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Any, predict_fn: PredictFn, rt: Runtime) -> dict[str, float]:
    """Eq. 1 on samples whose ground truth lies in ±99° (the dataset already filters;
    kept here as a guard): ``mae_pitch``, ``mae_yaw``, ``mae_roll``, ``mae_mean``, ``n``."""
    model = unwrap(model)
    model.eval()
    abs_sum = torch.zeros(3, dtype=torch.float64, device=rt.device)
    count = torch.zeros((), dtype=torch.float64, device=rt.device)
    for raw in loader:
        batch = prepare_batch(raw, rt)
        with torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            outputs = model(batch["image"])
        pred = predict_fn(outputs).float()
        target = batch["target"].float()
        keep = (target.abs() <= 99).all(1)
        abs_sum += (pred - target).abs()[keep].double().sum(0)
        count += keep.sum()
    all_reduce(abs_sum, rt)
    all_reduce(count, rt)
    n = max(float(count), 1.0)
    mae = (abs_sum / n).tolist()
    out = {f"mae_{a}": float(m) for a, m in zip(ANGLES, mae)}
    out["mae_mean"] = float(np.mean(mae))
    out["n"] = int(count)
    return out


# ----------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class TrainingRun:
    """One training run as :func:`fit` carries it out.

    ``paths``: where it writes. ``kind`` ("stage1" | "student"), ``config`` (the stage's params,
    JSON-able), ``input_size`` and ``extra_state`` (e.g. the label store's provenance) go into the
    checkpoint; ``metrics_extra`` (e.g. row counts) into the metrics JSON. With ``resume`` and an
    existing ``paths.out``, training continues after its last finished epoch (the checkpoint must
    be of the same kind and architecture); ``stop_after=k`` ends this call after k epochs (a
    time-boxed job or a simulated interruption; continue with ``resume``).
    """

    paths: RunPaths
    kind: str
    config: Mapping[str, Any]
    input_size: Sequence[int]
    extra_state: Mapping[str, Any] = field(default_factory=dict)
    metrics_extra: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False
    stop_after: int | None = None


@dataclass
class TrainState:
    """What a run carries from epoch to epoch (and, but for ``timings``, across a resume):
    finished ``epoch``s, the per-epoch metric ``history``, the ``best`` test epoch so far."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    timings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any], timing: dict[str, Any]) -> None:
        """Record a finished epoch: its ``row`` (``epoch``, lr, loss parts, test MAE) and ``timing``."""
        self.timings.append(timing)
        self.history.append(row)
        self.epoch = int(row["epoch"])
        if "mae_mean" in row and (self.best is None or row["mae_mean"] < self.best["mae_mean"]):
            self.best = {k: row[k] for k in ("epoch", "mae_pitch", "mae_yaw", "mae_roll", "mae_mean")}


def _spec_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(set(a) | set(b))
    return ", ".join(f"{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))


def resume_state(run: TrainingRun, model: HeadPoseNet, optimizer: torch.optim.Optimizer, scheduler: Any,
                 cfg: EngineConfig, rt: Runtime) -> TrainState:
    """``--resume``: load the checkpoint at ``run.paths.out`` into ``model``, ``optimizer``,
    ``scheduler`` and the global RNGs and return its state; a fresh state when there is none yet."""
    out = Path(run.paths.out)
    if not out.is_file():
        if rt.is_main:
            log.info("--resume: no checkpoint at %s yet, starting from scratch", out)
        return TrainState()
    state = load_checkpoint(out, map_location="cpu")
    if state["kind"] != run.kind:
        raise ValueError(f"cannot resume {run.kind!r} training from {str(out)!r}: it is a {state['kind']!r} checkpoint")
    spec = model.spec.to_dict()
    if state["model_spec"] != spec:
        raise ValueError(
            f"cannot resume from {str(out)!r}: it holds another architecture ({_spec_diff(state['model_spec'], spec)})"
        )
    load_model_state(model, state["model"], where=repr(str(out)))
    if not isinstance(state.get("optimizer"), dict):
        raise ValueError(f"cannot resume from {str(out)!r}: its field 'optimizer' holds no optimizer state "
                         "(a checkpoint written by training has one); train from scratch (drop --resume)")
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if "rng" in state:
            restore_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise ValueError(f"cannot resume from {str(out)!r}: its optimizer, scheduler or rng state does not fit this "
                         f"run ({exc.__class__.__name__}: {str(exc)[:160]}); train from scratch (drop --resume)") from None
    resumed = TrainState(int(state["epoch"]), list(state.get("history", [])), state.get("best"))
    old = state.get("engine", {})
    changed = [k for k in ("batch_size", "seed", "lr", "scheduler", "epochs") if k in old and old[k] != getattr(cfg, k)]
    if changed and rt.is_main:
        log.warning("resuming with changed %s: the run will not match an uninterrupted one", changed)
    log.info("resuming %s from epoch %d of %d", out, resumed.epoch, cfg.epochs)
    return resumed


def save_epoch(run: TrainingRun, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               cfg: EngineConfig, state: TrainState) -> None:
    """After an epoch (rank 0): the checkpoint (model, optimizer, scheduler, epoch, config, engine
    settings, RNG states, metric history), then the metrics, plots and timing files."""
    save_checkpoint(run.paths.out, checkpoint_state(
        run.kind, unwrap(model), run.input_size, epoch=state.epoch, config=run.config,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        engine=dataclasses.asdict(cfg), rng=rng_state(), history=state.history, best=state.best,
        **dict(run.extra_state),
    ))
    write_metrics(run.paths.metrics, run.paths.plots, state.history, state.best, run.metrics_extra)
    if run.paths.timing:
        write_epoch_csv(run.paths.timing, state.timings)


def make_optimizer(model: nn.Module, cfg: EngineConfig) -> tuple[torch.optim.Optimizer, Any]:
    net = unwrap(model)
    heads = getattr(net, "heads", None)
    if cfg.head_lr_mult != 1.0 and heads is not None:
        # The softmax RvC heads over 198 bins need a far larger logit range than the trunk's
        # weights move per Adam step; at lr they lag the trunk and predict ~0° for pitch and roll (docs/design.md §4). The
        # regression head stays at lr: a larger step saturates its tanh.
        ids = {id(p) for p in heads.parameters()}
        groups = [{"params": [p for p in net.parameters() if id(p) not in ids]},
                  {"params": list(heads.parameters()), "lr": cfg.lr * cfg.head_lr_mult}]
        optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = None
    if cfg.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return optimizer, scheduler


def _loaders(train_set: Any, test_set: Any, cfg: EngineConfig, rt: Runtime) -> tuple[Any, Any, Any]:
    """The training loader and its sampler, and the test loader (``None`` without a test set)."""
    pin = rt.device.type == "cuda"
    loader, sampler = make_loader(
        train_set, cfg.batch_size, train=True, workers=cfg.workers, seed=cfg.seed,
        rank=rt.rank, world_size=rt.world_size, pin_memory=pin,
    )
    test_loader = None
    if test_set is not None:
        test_loader, _ = make_loader(
            test_set, cfg.batch_size, train=False, workers=min(cfg.workers, 2), seed=cfg.seed,
            rank=rt.rank, world_size=rt.world_size, pin_memory=pin,
        )
    return loader, sampler, test_loader


def fit(
    model: HeadPoseNet,
    fns: tuple[LossFn, PredictFn],
    train_set: Any,
    test_set: Any,
    cfg: EngineConfig,
    rt: Runtime,
    run: TrainingRun,
) -> dict[str, Any]:
    """Train ``model`` for ``cfg.epochs`` epochs with ``fns`` = (loss_fn, predict_fn), evaluating
    on ``test_set`` (if not ``None``) and checkpointing to ``run.paths.out`` after each epoch.

    ``run`` says what the checkpoint and metrics record, and whether this call resumes or stops
    early (:class:`TrainingRun`). Seed the global RNGs
    (:func:`pipeline.training.runtime.set_seed`) before building the model. Returns
    ``{"final": metrics of the last epoch, "best": ...}``.
    """
    loss_fn, predict_fn = fns
    model.to(rt.device)
    if rt.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, cfg)
    state = resume_state(run, model, optimizer, scheduler, cfg, rt) if run.resume else TrainState()
    start = state.epoch
    net = wrap_ddp(model, rt)
    loader, sampler, test_loader = _loaders(train_set, test_set, cfg, rt)
    if rt.is_main:
        log.info("training %s %s on %s: %d train samples, %d epochs, batch %d, lr %g",
                 run.kind, model.spec.backbone, rt.device, len(train_set), cfg.epochs, cfg.batch_size, cfg.lr)

    end = cfg.epochs if run.stop_after is None else min(cfg.epochs, start + run.stop_after)
    for epoch in range(start, end):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        parts = train_one_epoch(net, loader, optimizer, loss_fn, rt, epoch, cfg.epochs, cfg.progress)
        if scheduler is not None:
            scheduler.step()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **parts}
        last = epoch + 1 == cfg.epochs
        if test_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
            row.update({k: v for k, v in evaluate(net, test_loader, predict_fn, rt).items() if k != "n"})
        # wall-clock figures vary run to run: logged (and written to ``run.paths.timing``, which is
        # no DVC output), never stored in the checkpoint, metrics or plots (byte-reproducible)
        timing = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 3),
                  "images_per_s": round(row.pop("images_per_s"), 2)}
        state.add(row, timing)
        if rt.is_main:
            log.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in {**row, **timing}.items()))
            save_epoch(run, net, optimizer, scheduler, cfg, state)
        if rt.distributed:
            dist.barrier()
    if rt.is_main and start >= cfg.epochs:
        log.info("%s already has %d finished epochs (epochs: %d): nothing to train", Path(run.paths.out), start,
                 cfg.epochs)
        write_metrics(run.paths.metrics, run.paths.plots, state.history, state.best, run.metrics_extra)
    return {"final": state.history[-1] if state.history else {}, "best": state.best or {}}


__all__ = [
    "LossFn", "PredictFn", "TrainState", "TrainingRun", "evaluate", "fit", "make_optimizer", "resume_state", "save_epoch",
    "train_one_epoch",
]
