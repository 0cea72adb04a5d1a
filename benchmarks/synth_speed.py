"""Synthesizer throughput at 450×450: images/s with 1 and 2 worker processes.

Times the whole per-image work (draw, render, JPEG encode, .mat writes) through
``pipeline.synth.synthesize`` into a temporary folder. The last line is
``images_per_s_per_core <value>``: images per CPU-second of the 1-worker run (process CPU time,
so a machine shared with other jobs does not distort it; the wall-clock rates are printed too). Usage:
``.venv/bin/python benchmarks/synth_speed.py [--n 120] [--size 450]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pipeline.synth import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=120, help="images per run")
    ap.add_argument("--size", type=int, default=450)
    args = ap.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "warmup", n_train=4, n_test=0, seed=99, size=args.size, progress=False)
        cpu = {}
        for workers in (1, 2):
            c0 = time.process_time()
            info = synthesize(Path(tmp) / f"w{workers}", n_train=args.n, n_test=0, seed=0, size=args.size,
                              workers=workers, progress=False)
            rates[workers] = info["images_per_s"]
            cpu[workers] = time.process_time() - c0
            print(f"workers={workers}: {info['images_per_s']:.1f} images/s "
                  f"({info['images_per_s_per_worker']:.1f} per worker), {args.n} images {args.size}x{args.size}")
    print(f"cpu cores on this machine: {os.cpu_count()} (shared machines give lower, noisier numbers)")
    per_cpu_s = args.n / cpu[1]
    print(f"1 worker: {cpu[1]:.2f} CPU-s for {args.n} images = {1000 * cpu[1] / args.n:.1f} ms CPU per image")
    print(f"images_per_s_per_core {per_cpu_s:.1f}")


if __name__ == "__main__":
    main()
