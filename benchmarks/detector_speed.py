"""Images/s of each face-detector backend on one core (single process, one thread).

    .venv/bin/python benchmarks/detector_speed.py [--images data/synthetic/test] [--n 100]

Images are decoded once up front; only ``Detector.detect`` is timed, the backends in turn for
``--rounds`` rounds after one warm-up pass each (medians; last line the ratio of medians).
Without an image folder (run ``hpekd synthesize`` first for the synthetic set) it times
procedurally drawn cartoon faces at 450×450 instead. Prints one line per backend and a
ratio line.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before yuface's libgomp is loaded: one core per process

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import _common  # noqa: E402,F401  (puts the repository on sys.path)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _common import alternate, ratio_line  # noqa: E402

from pipeline.core.images import read_image  # noqa: E402
from pipeline.relabel.detect import available_detectors, get_detector  # noqa: E402


def _cartoons(n: int, size: int = 450) -> list[np.ndarray]:
    from tests.helpers.relabel import cartoon_image

    rng = np.random.default_rng(0)
    return [cartoon_image((size, size), [(size / 2 + rng.uniform(-40, 40), size / 2 + rng.uniform(-40, 40),
                                          rng.uniform(0.9, 1.6))], seed=i)[0] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="data/synthetic/test", help="folder of .jpg/.png images")
    ap.add_argument("--n", type=int, default=100, help="number of images")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", default=",".join(b for b in ("yunet", "mtcnn") if b in available_detectors()))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    folder = Path(args.images)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else []
    if files:
        images = [read_image(p) for p in files[: args.n]]
        what = f"{len(images)} images from {folder}"
    else:
        images = _cartoons(args.n)
        what = f"{len(images)} cartoon faces 450x450 ({folder} not found)"
    h, w = images[0].shape[:2]
    print(f"detector speed, 1 process, 1 thread, {what} (first {w}x{h})")
    detectors = {name: get_detector(name) for name in [b for b in args.backends.split(",") if b]}
    found: dict[str, int] = {}

    def rate(name: str) -> float:
        det = detectors[name]
        t0 = time.perf_counter()
        found[name] = sum(bool(det.detect(img)) for img in images)
        return len(images) / (time.perf_counter() - t0)

    # warm-up (alternate's first call of each) then rounds in turn: A B, B A, ...
    comp = alternate("detectors", "images/s/core", {n: (lambda n=n: rate(n)) for n in detectors}, rounds=args.rounds)
    for name in detectors:
        comp.notes[name] = f"{1000 / comp.median(name):.1f} ms/image, face found in {found[name]}/{len(images)}"
    for line in comp.lines():
        print(line)
    if len(detectors) >= 2:
        names = sorted(detectors, key=comp.median, reverse=True)
        print(ratio_line(comp, names[0], names[1]))

if __name__ == "__main__":
    main()
