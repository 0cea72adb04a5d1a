"""Training images/s with the real data loader vs the same step on in-memory tensors, stage 1
(eq. 4, five heads) or stage 2 (eq. 7 on replayed teacher views), alternated in one process.

    .venv/bin/python benchmarks/train_throughput.py [--stage 1|2] [--boxes data/boxes.parquet]
        [--backbone resnet18] [--size 112] [--batch 32] [--steps 8] [--workers 2] [--rounds 3]

"Real": ``PoseDataset`` (decode, one-warp crop with the view, albumentations) through
``make_loader`` with DataLoader workers, then the engine's training step
(``pipeline.training.engine.train_one_epoch``: normalise on the device, bf16 autocast +
channels-last on CUDA, the loss, Adam). "In memory": the same step on one collated batch already
on the device. Each round runs ``--steps`` steps of each, in turn (A B, B A, …); the real loader
iterates a table of exactly ``steps × batch`` rows, so its persistent workers are idle (not
prefetching) while the in-memory steps are timed. Stage 2 uses an in-memory label store of
random teacher distributions (the loader and the loss run the real code). Without ``--boxes`` it
synthesizes 450-px JPEG faces into a temporary folder. The last line is
``ratio <median real ÷ median in-memory>`` (1.0 = the loader keeps up).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import pandas as pd
import torch
from _common import Comparison, alternate, machine, ratio_line, synth_boxes
from torch.utils.data import default_collate

from pipeline.core.config import default_config
from pipeline.core.views import views_array
from pipeline.data.datasets import PoseDataset
from pipeline.data.loader import make_loader
from pipeline.manifest.schema import read_boxes
from pipeline.model.network import HeadPoseNet, ModelSpec
from pipeline.training.engine import make_optimizer, train_one_epoch
from pipeline.training.runtime import Runtime, setup_runtime
from pipeline.training.stage1 import Stage1Config


@dataclass
class TrainBench:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Any
    rt: Runtime
    dataset: PoseDataset
    batch: int

    def timed(self, batches: Iterable, n_images: int) -> float:
        import time

        sync = torch.cuda.synchronize if self.rt.device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        train_one_epoch(self.model, batches, self.optimizer, self.loss_fn, self.rt, 0, progress=False)
        sync()
        return n_images / (time.perf_counter() - t)


def _stage2(boxes: pd.DataFrame, backbone: str, size: int, views: int = 8, seed: int = 0):
    """Student model, its eq. 7 loss and dataset, over an in-memory store of random distributions."""
    from pipeline.manifest.rows import split_rows
    from pipeline.teacher.encoding import Encoding
    from pipeline.teacher.labelread import TeacherLabels
    from pipeline.training.stage2 import StudentConfig, StudentDataset, student_fns
    from pipeline.training.targets import TeacherTable, ViewReplay

    rows = split_rows(boxes, "train")
    ids = boxes["sample_id"].astype(str).to_numpy()[rows]
    cfg = default_config(StudentConfig, "train_student", backbone=backbone, input_size=size, seed=seed)
    q = cfg.spec().grids["bin1"].count
    logits = np.random.default_rng(seed).normal(size=(len(rows), views, 3, q)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    enc = Encoding("float16", q)
    labels = TeacherLabels("in-memory", {"manifest": {"split": "train"}}, enc, enc.encode(probs),
                           views_array(list(ids), views, seed), ids.astype(object), rows.astype(np.int64))
    ds = StudentDataset(boxes, "train", (size, size), train=True, augment=cfg.augment(),
                        view_fn=ViewReplay(labels, len(boxes)), seed=cfg.seed)
    table = TeacherTable(labels, len(boxes))
    loss_fn, _ = student_fns(cfg.spec(), lambda dev, b: table(b["index"], b["view_id"], dev), cfg.ce_weight)
    return cfg.spec(), loss_fn, ds, cfg.lr


def make_bench(stage: int, boxes: str | Path, backbone: str, size: int, batch: int, device: str = "auto",
               seed: int = 0) -> TrainBench:
    """The model, optimizer, loss and training dataset of ``stage`` on the rows of ``boxes``."""
    from pipeline.training.stage1 import stage1_fns

    rt = setup_runtime(device)
    if stage == 1:
        spec = ModelSpec(backbone, (1, 2, 3, 4), regression=True)
        loss_fn, _ = stage1_fns(spec)
        ds = PoseDataset(boxes, "train", size, train=True, seed=seed)
        lr = 1e-4
    elif stage == 2:
        spec, loss_fn, ds, lr = _stage2(read_boxes(boxes), backbone, size, seed=seed)
    else:
        raise ValueError(f"stage {stage!r} must be 1 or 2")
    torch.manual_seed(seed)
    model = HeadPoseNet(spec).to(rt.device)
    if rt.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer, _ = make_optimizer(model, dataclasses.replace(default_config(Stage1Config, "train_teacher").engine(), lr=lr))
    return TrainBench(model, optimizer, loss_fn, rt, ds, batch)


def compare_loader(bench: TrainBench, steps: int, workers: int, rounds: int) -> Comparison:
    """Alternate real-loader epochs of ``steps`` batches with ``steps`` in-memory steps."""
    ds, b = bench.dataset, bench.batch
    if len(ds) < steps * b:
        raise ValueError(f"need {steps * b} training rows for {steps} steps of {b}, the table has {len(ds)}")
    loader, sampler = make_loader(ds, b, train=True, workers=workers, seed=0,
                                  pin_memory=bench.rt.device.type == "cuda", drop_last=True)
    dev = bench.rt.device
    one = default_collate([ds[(0, i)] for i in range(b)])
    one = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in one.items()}
    epoch = [0]
    per_epoch = len(loader)

    def real() -> float:
        sampler.set_epoch(epoch[0])
        epoch[0] += 1
        return bench.timed(loader, per_epoch * b)

    def memory() -> float:
        return bench.timed([one] * steps, steps * b)

    comp = alternate("training step", "images/s", {"real loader": real, "in memory": memory}, rounds)
    comp.notes["real loader"] = f"{workers} DataLoader workers, {per_epoch} steps of {b}"
    comp.notes["in memory"] = f"{steps} steps of {b} on one batch on {dev}"
    return comp


def rows_for(boxes: Path, n_rows: int, out: Path) -> Path:
    """A copy of ``boxes`` with its rows repeated (distinct sample ids) to ``n_rows`` training rows."""
    df = read_boxes(boxes)
    reps = -(-n_rows // len(df))
    parts = []
    for k in range(reps):
        part = df.copy()
        part["sample_id"] = part["sample_id"].astype(str) + ("" if k == 0 else f"~{k}")
        parts.append(part)
    pd.concat(parts, ignore_index=True).iloc[:n_rows].to_parquet(out, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, default=1, choices=(1, 2))
    ap.add_argument("--boxes", default=None)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="steps per round (each of real and in-memory)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=64, help="synthetic images (without --boxes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        boxes = Path(args.boxes) if args.boxes else synth_boxes(Path(tmp), args.images, 450, workers=2)
        boxes = rows_for(boxes, args.steps * args.batch, Path(tmp) / "rows.parquet")
        bench = make_bench(args.stage, boxes, args.backbone, args.size, args.batch, args.device)
        comp = compare_loader(bench, args.steps, args.workers, args.rounds)
        print(f"{machine()}; stage {args.stage}, {args.backbone} {args.size}px, batch {args.batch}, "
              f"torch threads {torch.get_num_threads()}")
        for line in comp.lines():
            print(line)
        print(ratio_line(comp, "real loader", "in memory"))


if __name__ == "__main__":
    main()
