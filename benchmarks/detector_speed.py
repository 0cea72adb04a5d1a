"""Images/s of each face-detector backend on one core (single process, one thread).

    .venv/bin/python benchmarks/detector_speed.py [--images data/synthetic/test] [--n 100]

Images are decoded once up front; only ``Detector.detect`` is timed (after 3 warm-up calls).
Without an image folder (run ``hpekd synthesize`` first for the synthetic set) it times
procedurally drawn cartoon faces at 450×450 instead. Prints one line per backend and a
ratio line.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before yuface's libgomp is loaded: one core per process

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.images import read_image  # noqa: E402
from pipeline.relabel.detect import available_detectors, get_detector  # noqa: E402


def _cartoons(n: int, size: int = 450) -> list[np.ndarray]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from relabel_helpers import cartoon_image

    rng = np.random.default_rng(0)
    return [cartoon_image((size, size), [(size / 2 + rng.uniform(-40, 40), size / 2 + rng.uniform(-40, 40),
                                          rng.uniform(0.9, 1.6))], seed=i)[0] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="data/synthetic/test", help="folder of .jpg/.png images")
    ap.add_argument("--n", type=int, default=100, help="number of images")
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
    rates = {}
    for name in [b for b in args.backends.split(",") if b]:
        det = get_detector(name)
        for img in images[:3]:
            det.detect(img)
        found = 0
        t0 = time.perf_counter()
        for img in images:
            found += bool(det.detect(img))
        dt = time.perf_counter() - t0
        rates[name] = len(images) / dt
        print(f"{name:>6}: {rates[name]:8.1f} images/s/core  ({1000 * dt / len(images):6.1f} ms/image, "
              f"face found in {found}/{len(images)})")
    if len(rates) >= 2:
        names = sorted(rates, key=rates.get, reverse=True)
        print("ratio: " + ", ".join(f"{a}/{b} = {rates[a] / rates[b]:.2f}x" for a, b in zip(names, names[1:])))


if __name__ == "__main__":
    main()
