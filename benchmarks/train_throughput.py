"""Stage-1 training images/s with real data loading vs the same step on in-memory tensors.

    .venv/bin/python benchmarks/train_throughput.py [--boxes data/boxes.parquet] [--backbone resnet18]
        [--size 112] [--batch 32] [--steps 20] [--workers 2] [--device auto]

"Real": ``PoseDataset`` (decode, one-warp crop with a random flip/rotation, albumentations)
through ``make_loader`` with DataLoader workers, then the engine's training step
(``pipeline.training.engine.train_one_epoch``: normalise on the device, bf16 autocast + channels-last
on CUDA, eq. 4 loss, Adam). "In memory": the same step on one batch already on the device.
Without ``--boxes`` it writes a tiny schematic-face dataset of 450×450 PNGs into a temporary
folder. The last line is ``ratio <real/in-memory>`` (1.0 = the loader keeps up).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.datasets import PoseDataset  # noqa: E402
from pipeline.data.loader import make_loader  # noqa: E402
from pipeline.model.network import HeadPoseNet, ModelSpec  # noqa: E402
from pipeline.training.engine import EngineConfig, make_optimizer, setup_runtime, train_one_epoch  # noqa: E402
from pipeline.training.stage1 import stage1_fns  # noqa: E402


def _timed(model, batches, optimizer, loss_fn, rt, n_images: int) -> float:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    train_one_epoch(model, batches, optimizer, loss_fn, rt, 0, progress=False)
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", default=None)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = None
    boxes = args.boxes
    if boxes is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import make_tiny_dataset

        tmp = tempfile.TemporaryDirectory()
        n = args.batch * min(args.steps, 8)
        boxes = make_tiny_dataset(Path(tmp.name), n_train=n, n_test=4, size=450, seed=0)

    rt = setup_runtime(args.device)
    spec = ModelSpec(args.backbone, (1, 2, 3, 4), regression=True)
    torch.manual_seed(0)
    model = HeadPoseNet(spec).to(rt.device)
    if rt.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer, _ = make_optimizer(model, EngineConfig(lr=1e-4))
    loss_fn, _ = stage1_fns(spec)
    ds = PoseDataset(boxes, "train", args.size, train=True, seed=0)
    loader, sampler = make_loader(ds, args.batch, train=True, workers=args.workers, seed=0,
                                  pin_memory=rt.device.type == "cuda", drop_last=True)
    per_epoch = len(loader)

    def real_batches(k: int):
        epoch = 0
        while k > 0:
            sampler.set_epoch(epoch)
            take = min(k, per_epoch)
            yield from itertools.islice(iter(loader), take)
            k -= take
            epoch += 1

    # In-memory first, before any DataLoader worker exists: idle-but-prefetching workers
    # would otherwise steal the CPU from the in-memory timing. The batch is collated straight
    # from the dataset, so both runs train on the same kind of crops.
    one = default_collate([ds[(0, i)] for i in range(args.batch)])
    one = {k: v.to(rt.device) if isinstance(v, torch.Tensor) else v for k, v in one.items()}
    train_one_epoch(model, [one] * 2, optimizer, loss_fn, rt, 0, progress=False)  # warm-up: kernels are chosen
    mem = _timed(model, [one] * args.steps, optimizer, loss_fn, rt, args.steps * args.batch)
    train_one_epoch(model, list(real_batches(2)), optimizer, loss_fn, rt, 0, progress=False)  # workers start
    real = _timed(model, real_batches(args.steps), optimizer, loss_fn, rt, args.steps * args.batch)
    print(f"device {rt.device}, {args.backbone} {args.size}px, batch {args.batch}, {args.workers} workers, "
          f"{args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"real data loading: {real:.1f} images/s")
    print(f"in-memory tensors: {mem:.1f} images/s")
    print(f"ratio {real / mem:.3f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
