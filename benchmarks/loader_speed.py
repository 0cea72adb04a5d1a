"""Training samples per CPU-second on one core: ``PoseDataset`` items (decode a 450² JPEG, one
warp with a random flip/rotation, the albumentations list) with the full-size decode vs the
reduced-size decode of :mod:`pipeline.core.decode`, alternated in one process.

    .venv/bin/python benchmarks/loader_speed.py [--size 224] [--n 48] [--rounds 5] [--box-scale 1.0]

One thread (torch and OpenCV), no DataLoader: the per-core rate a DataLoader worker can reach
(the loader adds its IPC on top). ``--box-scale`` shrinks the synthetic faces' boxes about their
centres (300W-LP boxes are ~0.35–0.55 of the 450-px image; the synthesizer's are larger);
``--upscale 3`` stands in for large photos with large faces (AFLW, BIWI). Also
prints the time of each part (decode, warp, photometric) and, last,
``ratio <reduced ÷ full samples per CPU-second>``. Target at 224 px: ≥ 225 samples/s per core
(16 cores feeding 3,600 images/s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
import cv2
import numpy as np
import pandas as pd
import torch
from _common import alternate, cpu_seconds, machine, ratio_line, synth_boxes

from pipeline.core.decode import read_crop, reduction_factor
from pipeline.core.geometry import crop
from pipeline.core.images import read_image
from pipeline.core.views import random_view
from pipeline.data.datasets import PoseDataset
from pipeline.data.transforms import apply_photometric, photometric, sample_rng
from pipeline.manifest.rows import image_paths


def scaled_boxes(boxes: Path, scale: float, out: Path) -> Path:
    df = pd.read_parquet(boxes)
    cx, cy = (df.x1 + df.x2) / 2, (df.y1 + df.y2) / 2
    hw, hh = (df.x2 - df.x1) / 2 * scale, (df.y2 - df.y1) / 2 * scale
    df["x1"], df["x2"], df["y1"], df["y2"] = cx - hw, cx + hw, cy - hh, cy + hh
    for c in ("x1", "y1", "x2", "y2"):
        df[c] = df[c].astype(np.float32)
    df.to_parquet(out, index=False)
    return out


def upscaled(boxes: Path, factor: float, out_dir: Path) -> Path:
    """Every image resized by ``factor`` (re-encoded as JPEG q95) and its box scaled with it: a
    stand-in for large photos with large faces (AFLW's Flickr images, BIWI's 640×480 frames)."""
    from pipeline.core.images import write_image

    df = pd.read_parquet(boxes)
    for i, path in enumerate(image_paths(df, np.arange(len(df)))):
        img = read_image(path)
        big = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        write_image(out_dir / f"big_{i:05d}.jpg", big)
        df.loc[i, "image_path"] = f"big_{i:05d}.jpg"
    df["root"] = str(out_dir)
    for c in ("x1", "y1", "x2", "y2"):
        df[c] = (df[c] * factor).astype(np.float32)
    df.to_parquet(out_dir / "boxes.parquet", index=False)
    return out_dir / "boxes.parquet"


def per_cpu_second(ds: PoseDataset, epochs: int = 1) -> float:
    c0 = cpu_seconds()
    n = 0
    for e in range(epochs):
        ds.set_epoch(e)
        for i in range(len(ds)):
            ds[i]
            n += 1
    return n / (cpu_seconds() - c0)


def parts_ms(ds: PoseDataset) -> dict[str, float]:
    """Mean CPU ms of each part of an item, over the dataset (full decode)."""
    t = {"decode (full)": 0.0, "decode (reduced)": 0.0, "warp": 0.0, "photometric": 0.0}
    ph = photometric()
    for i in range(len(ds)):
        rng = sample_rng(0, 0, i)
        view = random_view(rng)
        c = time.process_time()
        img = read_image(ds.paths[i])
        t["decode (full)"] += time.process_time() - c
        c = time.process_time()
        read_crop(ds.paths[i], ds.boxes[i], ds.size, view)
        t["decode (reduced)"] += time.process_time() - c  # includes its own warp
        c = time.process_time()
        out = crop(img, ds.boxes[i], ds.size, view=view)
        t["warp"] += time.process_time() - c
        c = time.process_time()
        apply_photometric(ph, out, rng)
        t["photometric"] += time.process_time() - c
    t["decode (reduced)"] -= t["warp"]
    return {k: 1000 * v / len(ds) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="network input (h = w)")
    ap.add_argument("--n", type=int, default=48, help="synthetic 450-px images")
    ap.add_argument("--image-size", type=int, default=450)
    ap.add_argument("--box-scale", type=float, default=1.0)
    ap.add_argument("--upscale", type=float, default=1.0, help="resize the images (and boxes) by this factor")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        boxes = synth_boxes(Path(tmp), args.n, args.image_size, workers=2)
        if args.box_scale != 1.0:
            boxes = scaled_boxes(boxes, args.box_scale, Path(tmp) / "scaled.parquet")
        if args.upscale != 1.0:
            boxes = upscaled(boxes, args.upscale, Path(tmp) / "big")
        full = PoseDataset(boxes, "train", args.size, train=True, reduced_decode=False)
        fast = PoseDataset(boxes, "train", args.size, train=True, reduced_decode=True)
        factors = [reduction_factor(b, full.size) for b in full.boxes]
        widths = full.boxes[:, 2] - full.boxes[:, 0]
        print(f"{machine()}; 1 thread; {args.n} synthetic {round(args.image_size * args.upscale)}-px JPEGs, box width median "
              f"{np.median(widths):.0f} px, output {args.size} px, reduction factors "
              f"{ {int(k): int(v) for k, v in zip(*np.unique(factors, return_counts=True))} }")
        parts_ms(full)  # warm-up: albumentations initialises lazily
        parts = parts_ms(full)
        print("CPU ms per sample: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
        comp = alternate("loader per core", "samples/CPU-s",
                         {"full decode": lambda: per_cpu_second(full), "reduced decode": lambda: per_cpu_second(fast)},
                         rounds=args.rounds)
        for line in comp.lines():
            print(line)
        print(f"16 cores at the reduced-decode median: {16 * comp.median('reduced decode'):.0f} samples/s "
              f"(target 3,600 = 225 per core)")
        print(ratio_line(comp, "reduced decode", "full decode"))


if __name__ == "__main__":
    main()
