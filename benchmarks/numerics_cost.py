"""What the pinned numerics cost on this CPU: pinned (AVX2 caps, fixed threads) vs native,
for a stage-1 training step and the teacher job's ensemble pass, A/B alternated.

    .venv/bin/python benchmarks/numerics_cost.py [--rounds 7] [--steps 4] [--smoke]

The numerics are fixed when a process loads numpy/torch (pipeline/core/numerics.py), so the two
settings live in two persistent worker processes started side by side (``HPEKD_NUMERICS=pinned``
and ``=native``, the same thread count); each round asks one, then the other, for a timed batch
of work (A B, B A, …). Work: the synthetic default's stage-1 step (ResNet18, five heads, eq. 4,
64 px, batch 32, Adam) and its teacher pass (eval, the A = 9 crops of p = 2, s = 2 for 16
images). The last line is ``ratio <median pinned ÷ median native>`` of the training step's
images/s (below 1: the pin is slower); the teacher pass's ratio is printed above it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _worker() -> None:
    """Serve timing requests on stdin: `train N` / `teacher N` → images per second."""
    sys.path.insert(0, str(HERE))
    import _common  # noqa: F401  (repository on sys.path, numerics pinned unless HPEKD_NUMERICS=native)
    import torch

    from pipeline.core import numerics
    from pipeline.model.losses import stage1_loss
    from pipeline.model.network import HeadPoseNet, ModelSpec

    numerics.apply_threads()
    torch.manual_seed(0)
    model = HeadPoseNet(ModelSpec("resnet18", (1, 2, 3, 4), True, feature_norm=True))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(32, 3, 64, 64)
    target = torch.empty(32, 3).uniform_(-60, 60)
    crops = torch.randn(16 * 9, 3, 64, 64)
    info = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        what, n = line.split()
        t0 = time.perf_counter()
        for _ in range(int(n)):
            if what == "train":
                model.train()
                loss, _ = stage1_loss(model(x), target, model.spec.grids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                model.eval()
                with torch.inference_mode():
                    torch.softmax(model(crops)["bin1"].view(-1, 3, 198), -1)
        dt = time.perf_counter() - t0
        images = int(n) * (x.shape[0] if what == "train" else 16)
        print(f"{images / dt:.4f}", flush=True)


class Worker:
    def __init__(self, mode: str) -> None:
        from pipeline.core import numerics

        env = dict(os.environ, HPEKD_NUMERICS=mode)
        for key in numerics.wanted():
            env.pop(key, None)  # each worker sets (or not) its own ...
        env.update(numerics.preset())  # ... but what the host itself set stays
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def measure(self, what: str, n: int) -> float:
        self.proc.stdin.write(f"{what} {n}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4, help="training steps (and teacher passes) per timed call")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 step: that it runs")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker()
        return
    sys.path.insert(0, str(HERE))
    from _common import alternate, machine, ratio_line

    rounds, steps = (1, 1) if args.smoke else (args.rounds, args.steps)
    workers = {"pinned": Worker("pinned"), "native": Worker("native")}
    try:
        print(machine())
        for name, w in workers.items():
            print(f"{name}: torch CPU capability {w.info['capability']}, {w.info['threads']} threads")
        teacher = alternate("teacher pass (9 crops × 16 images, eval)", "images/s",
                            {k: (lambda w=w: w.measure("teacher", steps)) for k, w in workers.items()}, rounds)
        train = alternate("stage-1 training step (batch 32, 64 px)", "images/s",
                          {k: (lambda w=w: w.measure("train", steps)) for k, w in workers.items()}, rounds)
    finally:
        for w in workers.values():
            w.close()
    for comp in (teacher, train):
        print("\n".join(comp.lines()))
    print(f"teacher pass: {ratio_line(teacher, 'pinned', 'native')}")
    print(ratio_line(train, "pinned", "native"))


if __name__ == "__main__":
    main()
