"""Teacher-label job throughput vs the bare network, alternated in one run on the same machine.

Each round times the bare network's crops/s on in-memory batches (the same chunk of crops the
job feeds it) and the teacher job's crops/s end to end (reading the JPEGs, warping Z, cutting
crops on the device, the network, writing the Zarr store into a fresh folder), in turn (A B,
B A, …); prints the medians and last ``ratio <median job ÷ median bare>``. The images are 450-px
JPEG faces from the synthesizer with their landmark boxes.

    .venv/bin/python benchmarks/teacher_throughput.py                       # CPU defaults
    .venv/bin/python benchmarks/teacher_throughput.py --device cuda --backbone resnet50 \
        --size 224 --p 15 --s 5 --views 8 --n 256 --batch-size 16 --compile   # GPU (bf16)
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
import torch
from _common import Comparison, alternate, cpu_seconds, machine, ratio_line, synth_boxes, write_stage1_checkpoint

from pipeline.core.config import default_config
from pipeline.core.device import resolve_device
from pipeline.core.io import sha256_file
from pipeline.teacher.compute import cached_model
from pipeline.teacher.ensemble import ensemble_size
from pipeline.teacher.job import TeacherLabelsConfig, run_teacher_labels


def bare_crops_per_s(cfg: TeacherLabelsConfig, ck: str, size: int, seconds: float) -> float:
    """The job's network (same cache, device, compile, autocast) on one in-memory chunk of crops."""
    model, dev = cached_model(ck, sha256_file(ck), cfg.device, cfg.compile)
    crops = cfg.chunk or cfg.batch_size * cfg.views * cfg.A
    x = torch.randn(crops, 3, size, size, device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    amp = dev.type == "cuda" and cfg.amp
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            torch.softmax(model(x)["bin1"].float(), -1)

    step()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    sync()
    return n * crops / (time.perf_counter() - t0)


def compare_job(cfg: TeacherLabelsConfig, ck: str, boxes: str, size: int, work: Path, rounds: int,
                seconds: float) -> Comparison:
    """Alternate the bare network and the whole job (each run writes a new store under ``work``)."""
    runs = [0]
    cpu: dict[str, float] = {}

    def job() -> float:
        runs[0] += 1
        c0 = cpu_seconds()
        res = run_teacher_labels(cfg, ck, boxes, str(work / f"labels-{runs[0]}.zarr"))
        cpu["job"] = res.crops / max(cpu_seconds() - c0, 1e-9)
        cpu["images_per_s"] = res.rows / res.seconds
        return res.crops / res.seconds

    comp = alternate("teacher job", "crops/s",
                     {"bare network": lambda: bare_crops_per_s(cfg, ck, size, seconds), "teacher job": job}, rounds)
    comp.notes["teacher job"] = (f"{cpu['images_per_s']:.1f} images/s in the last round, images → Zarr; "
                                 f"{cpu['job']:.1f} crops per CPU-second")
    comp.notes["bare network"] = f"in-memory chunks of {cfg.chunk or cfg.batch_size * cfg.views * cfg.A} crops"
    return comp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64, help="network input (h = w)")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--s", type=int, default=1)
    ap.add_argument("--n", type=int, default=48, help="images in the job")
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4, help="samples per batch")
    ap.add_argument("--chunk", type=int, default=0, help="crops per forward (0 = batch·views·A)")
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=450)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--loader-workers", type=int, default=None,
                    help="DataLoader processes building Z (default: 0 on CPU, where the network needs every core; 8 on CUDA)")
    ap.add_argument("--workers", type=int, default=0, help="dask workers (0 = in this process)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each bare measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    if args.loader_workers is None:
        args.loader_workers = 8 if dev.type == "cuda" else 0
    cfg = default_config(TeacherLabelsConfig, "teacher_labels",
        p=args.p, s=args.s, views=args.views, shard_rows=args.shard_rows, chunk_rows=16 if args.shard_rows % 16 == 0 else 1,
        batch_size=args.batch_size, chunk=args.chunk, loader_workers=args.loader_workers, device=str(dev),
        amp=not args.no_amp, compile=args.compile, threads=args.threads, workers=args.workers,
    )
    A = ensemble_size(args.p, args.s)
    with tempfile.TemporaryDirectory(prefix="teacher-bench-") as tmp:
        root = Path(tmp)
        boxes = synth_boxes(root, args.n, args.image_size, workers=2)
        ck = write_stage1_checkpoint(root / "teacher.pt", args.backbone, args.size)
        print(f"{machine()}; device {dev}, {args.backbone} at {args.size}, p={args.p} s={args.s} A={A}, "
              f"V={args.views}, N={args.n}, batch {args.batch_size} samples = {args.batch_size * args.views * A} crops, "
              f"compile={args.compile}")
        comp = compare_job(cfg, str(ck), str(boxes), args.size, root, args.rounds, args.seconds)
        for line in comp.lines():
            print(line)
        print(ratio_line(comp, "teacher job", "bare network"))


if __name__ == "__main__":
    main()
