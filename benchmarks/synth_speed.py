"""Synthesizer throughput at 450×450: images/s with 1 and 2 worker processes, alternated.

Times the whole per-image work (draw, render, JPEG encode, .mat writes) through
``pipeline.synth.synthesize`` into a temporary folder, 1 worker and 2 workers in turn for
``--rounds`` rounds (A B, B A, …). Prints the medians, then ``images_per_s_per_core <value>``
(images per CPU-second of the 1-worker runs, median: process CPU time, so a machine shared with
other jobs distorts it less) and last ``ratio <median 2-worker ÷ median 1-worker images/s>``.
Usage: ``.venv/bin/python benchmarks/synth_speed.py [--n 60] [--size 450] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import alternate, machine, ratio_line

from pipeline.core.config import default_config
from pipeline.synth import SynthConfig, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60, help="images per run")
    ap.add_argument("--size", type=int, default=450)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    per_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [0]

        def run(workers: int) -> float:
            runs[0] += 1
            c0 = time.process_time()
            info = synthesize(default_config(SynthConfig, "synthesize", n_train=args.n, n_test=0, seed=0, size=args.size, workers=workers, label_noise={}), Path(tmp) / f"r{runs[0]}", progress=False)
            if workers == 1:
                per_cpu.append(args.n / (time.process_time() - c0))
            return info["images_per_s"]

        synthesize(default_config(SynthConfig, "synthesize", n_train=4, n_test=0, seed=99, size=args.size, label_noise={}), Path(tmp) / "warmup", progress=False)
        comp = alternate("synthesizer", "images/s", {"1 worker": lambda: run(1), "2 workers": lambda: run(2)},
                         rounds=args.rounds, warmup=False)
    print(f"{machine()}; {args.n} images {args.size}x{args.size} per run")
    for line in comp.lines():
        print(line)
    per_cpu.sort()
    med = per_cpu[len(per_cpu) // 2]
    print(f"1 worker: {1000 / med:.1f} ms CPU per image (median of {len(per_cpu)} runs; {os.cpu_count()} cores here)")
    print(f"images_per_s_per_core {med:.1f}")
    print(ratio_line(comp, "2 workers", "1 worker"))


if __name__ == "__main__":
    main()
