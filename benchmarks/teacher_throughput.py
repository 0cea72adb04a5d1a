"""Teacher-label job throughput vs the bare network, in one run on the same machine.

Prints the bare network's crops/s on in-memory batches (the same chunk of crops the job
feeds it), then the teacher job's crops/s end to end (reading images, warping Z, cutting
crops on the device, the network, writing the Zarr store), and last ``ratio <job ÷ bare>``.

    .venv/bin/python benchmarks/teacher_throughput.py                       # CPU defaults
    .venv/bin/python benchmarks/teacher_throughput.py --device cuda --backbone resnet50 \
        --size 224 --p 15 --s 5 --n 2048 --batch-size 16 --compile          # GPU (bf16)
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.images import write_image  # noqa: E402
from pipeline.model.checkpoint import save_checkpoint  # noqa: E402
from pipeline.model.network import HeadPoseNet, ModelSpec  # noqa: E402
from pipeline.teacher.ensemble import ensemble_size  # noqa: E402
from pipeline.teacher.job import TeacherLabelsConfig, cached_model, resolve_device, run_teacher_labels  # noqa: E402


def make_dataset(root: Path, n: int, image_size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img = (rng.random((image_size, image_size, 3)) * 80 + 60).astype(np.uint8)
        c = image_size / 2 + rng.uniform(-5, 5, 2)
        r = image_size * rng.uniform(0.25, 0.32)
        cv2.ellipse(img, (int(c[0]), int(c[1])), (int(r * 0.85), int(r)), 0, 0, 360, (210, 160, 130), -1)
        rel = f"img_{i:05d}.jpg"
        write_image(root / "images" / rel, img)
        rows.append(dict(sample_id=f"bench/{rel}#0", dataset="bench", split="train", root=str(root / "images"),
                         image_path=rel, pitch=0.0, yaw=0.0, roll=0.0, lm_x1=np.nan, lm_y1=np.nan, lm_x2=np.nan,
                         lm_y2=np.nan, group="", status="ok", reason="", x1=c[0] - r, y1=c[1] - r,
                         x2=c[0] + r, y2=c[1] + r, box_source="file", det_score=np.nan, fallback=False))
    df = pd.DataFrame(rows)
    for col in ("pitch", "yaw", "roll", "lm_x1", "lm_y1", "lm_x2", "lm_y2", "x1", "y1", "x2", "y2", "det_score"):
        df[col] = df[col].astype(np.float32)
    df.to_parquet(root / "boxes.parquet", index=False)
    return root / "boxes.parquet"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def bare_crops_per_s(cfg: TeacherLabelsConfig, ck: str, size: int, seconds: float) -> tuple[float, float]:
    from pipeline.core.io import sha256_file

    model, dev = cached_model(ck, sha256_file(ck), cfg.device, cfg.compile)
    crops = cfg.chunk or cfg.batch_size * cfg.views * cfg.A
    x = torch.randn(crops, 3, size, size, device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (dev.type == "cuda" and cfg.amp) else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with torch.no_grad(), ctx:
            torch.softmax(model(x)["bin1"].float(), -1)

    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    n, t0, c0 = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return n * crops / (time.perf_counter() - t0), n * crops / (cpu_seconds() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64, help="network input (h = w)")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--s", type=int, default=1)
    ap.add_argument("--n", type=int, default=96, help="images in the job")
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4, help="samples per batch")
    ap.add_argument("--chunk", type=int, default=0, help="crops per forward (0 = batch·views·A)")
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--loader-workers", type=int, default=None,
                    help="DataLoader processes building Z (default: 0 on CPU, where the network needs every core; 8 on CUDA)")
    ap.add_argument("--workers", type=int, default=0, help="dask workers (0 = in this process)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the bare measurement")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    if args.loader_workers is None:
        args.loader_workers = 8 if dev.type == "cuda" else 0
    cfg = TeacherLabelsConfig(
        p=args.p, s=args.s, views=args.views, shard_rows=args.shard_rows, chunk_rows=16 if args.shard_rows % 16 == 0 else 1,
        batch_size=args.batch_size, chunk=args.chunk, loader_workers=args.loader_workers, device=str(dev),
        amp=not args.no_amp, compile=args.compile, threads=args.threads, workers=args.workers,
    )
    A = ensemble_size(args.p, args.s)
    with tempfile.TemporaryDirectory(prefix="teacher-bench-") as tmp:
        root = Path(tmp)
        boxes = make_dataset(root, args.n, args.image_size)
        spec = ModelSpec(args.backbone)
        ck = root / "teacher.pt"
        save_checkpoint(ck, {"kind": "stage1", "model_spec": spec.to_dict(), "model": HeadPoseNet(spec).state_dict(),
                             "optimizer": None, "scheduler": None, "epoch": 0, "config": {},
                             "input_size": [args.size, args.size]})
        print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
              f"{args.backbone} at {args.size}, p={args.p} s={args.s} A={A}, V={args.views}, N={args.n}, "
              f"batch {args.batch_size} samples = {args.batch_size * args.views * A} crops, compile={args.compile}")
        bare, bare_cpu = bare_crops_per_s(cfg, str(ck), args.size, args.seconds)
        print(f"bare network      {bare:10.1f} crops/s  (in-memory batches; {bare_cpu:.1f} crops per CPU-second)")
        # warm-up job (model load / compile, loader start) on a few images, then the timed run
        warm_boxes = root / "warm.parquet"
        df = pd.read_parquet(boxes)
        df.iloc[: max(1, args.batch_size * 2)].to_parquet(warm_boxes, index=False)
        run_teacher_labels(cfg, str(ck), str(warm_boxes), str(root / "warm.zarr"))
        c0 = cpu_seconds()
        res = run_teacher_labels(cfg, str(ck), str(boxes), str(root / "labels.zarr"))
        job, job_cpu = res.crops / res.seconds, res.crops / (cpu_seconds() - c0)
        print(f"teacher job       {job:10.1f} crops/s  ({res.rows / res.seconds:.1f} images/s, {res.rows} images x "
              f"{args.views} views x {A} crops in {res.seconds:.1f} s, images → Zarr; {job_cpu:.1f} crops per CPU-second)")
        bare2, bare2_cpu = bare_crops_per_s(cfg, str(ck), args.size, args.seconds)
        print(f"bare network      {bare2:10.1f} crops/s  (again after the job; {bare2_cpu:.1f} crops per CPU-second)")
        bare, bare_cpu = (bare + bare2) / 2, (bare_cpu + bare2_cpu) / 2  # bracket the job: shared machines drift
        if dev.type == "cpu" or args.workers:
            print(f"cpu-time ratio {job_cpu / bare_cpu:.3f}  (job ÷ bare crops per CPU-second; robust on a shared machine)")
        print(f"ratio {job / bare:.3f}")


if __name__ == "__main__":
    main()
