"""A 300W-LP-sized rehearsal of the plumbing on CPU: ``index``, ``relabel`` (landmark boxes),
``teacher-labels``, the student's store load and DVC's hashing of the store, at N rows.

    .venv/bin/python benchmarks/scale.py --n 1000 --n 10000 [--network stub|resnet18] [--work DIR]

The dataset is 300W-LP-shaped (``SYNTH/<name>.jpg + .mat`` and ``landmarks/SYNTH/<name>_pts.mat``)
but tiny: 100 distinct 64-px synthesizer samples, hard-linked under N names. The teacher is
ResNet18 at 16 px with p = 1, s = 1 (A = 9), V = 8; ``--network stub`` replaces its forward by a
pooling + linear layer with the same outputs (the job's plumbing without the network's compute,
which is linear in N by construction and would take hours at 122k on 2 cores). Each stage runs in
its own process (its peak RSS is its own). Reports seconds per 1k rows and peak RSS per stage,
the store's file count, the student's memory for the loaded store ÷ its decoded size, ``dvc
commit`` (hashes the store) and ``dvc status`` seconds, and last
``ratio <largest N's seconds per row ÷ the previous N's>`` of the slowest-growing stage (the
superlinearity check: target ≤ 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import REPO, machine, peak_rss_mb, write_stage1_checkpoint

from pipeline.core.config import default_config

BASE = 100  # distinct samples
SIZE, P, S, V = 16, 1, 1, 8
STAGES = ("index", "relabel", "teacher-labels", "load", "dvc")


def make_dataset(root: Path, n: int) -> Path:
    """``root/train`` with n hard-linked 300W-LP-style samples (100 distinct)."""
    from pipeline.synth import SynthConfig, synthesize

    base = root / "base"
    if not base.exists():
        synthesize(default_config(SynthConfig, "synthesize", n_train=BASE, n_test=0, seed=0, size=64, workers=2, label_noise={}), base, progress=False)
    src, lms = base / "train" / "SYNTH", base / "train" / "landmarks" / "SYNTH"
    out = root / f"n{n}" / "train"
    (out / "SYNTH").mkdir(parents=True)
    (out / "landmarks" / "SYNTH").mkdir(parents=True)
    names = sorted(p.stem for p in src.glob("*.jpg"))
    for i in range(n):
        b, name = names[i % len(names)], f"SCALE_{i:06d}"
        os.link(src / f"{b}.jpg", out / "SYNTH" / f"{name}.jpg")
        os.link(src / f"{b}.mat", out / "SYNTH" / f"{name}.mat")
        os.link(lms / f"{b}_pts.mat", out / "landmarks" / "SYNTH" / f"{name}_pts.mat")
    return out


class StubNet:
    """Same outputs as the teacher (``bin1`` logits [B, 3, Q]) at almost no compute."""

    @staticmethod
    def build(n_bins: int):
        import torch

        class _Stub(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Linear(3, 3 * n_bins)

            def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                return {"bin1": self.fc(x.mean((2, 3))).view(x.shape[0], 3, n_bins)}

        torch.manual_seed(0)
        return _Stub().eval()


def run_stage(stage: str, d: Path, network: str) -> dict[str, Any]:
    """One stage in this process; returns its seconds and extra figures."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    t = time.perf_counter()
    extra: dict[str, Any] = {}
    if stage == "index":
        from pipeline.manifest.index import index_datasets
        from pipeline.manifest.spec import IndexConfig

        cfg = default_config(IndexConfig, "index", datasets=({"name": "scale", "format": "300w_lp", "root": str(d / "train"), "split": "train",
                                     "subsets": ["SYNTH"]},), workers=2)
        t = time.perf_counter()
        index_datasets(cfg, d / "manifest.parquet")
    elif stage == "relabel":
        from pipeline.relabel.config import RelabelConfig
        from pipeline.relabel.job import read_manifest_table, relabel, write_boxes

        t = time.perf_counter()
        boxes, _ = relabel(read_manifest_table(d / "manifest.parquet"), default_config(RelabelConfig, "relabel", source="landmarks", workers=1),
                           progress=False)
        write_boxes(boxes, d / "boxes.parquet")
    elif stage == "teacher-labels":
        from pipeline.core.io import sha256_file
        from pipeline.teacher import compute, job

        ck = write_stage1_checkpoint(d / "teacher.pt", "resnet18", SIZE)
        cfg = default_config(job.TeacherLabelsConfig, "teacher_labels", p=P, s=S, views=V, shard_rows=4096, chunk_rows=64, batch_size=64, chunk=0,
                                      loader_workers=0, device="cpu", workers=0)
        if network == "stub":
            compute._MODEL_CACHE[(sha256_file(ck), "cpu", False)] = (StubNet.build(198), torch.device("cpu"))
        t = time.perf_counter()
        res = job.run_teacher_labels(cfg, str(ck), str(d / "boxes.parquet"), str(d / "store" / "teacher.zarr"))
        files = [p for p in (d / "store" / "teacher.zarr").rglob("*") if p.is_file()]
        extra = {"store_files": len(files), "store_mb": sum(p.stat().st_size for p in files) / 2**20,
                 "crops": res.crops}
    elif stage == "load":
        from pipeline.teacher import labelstore
        from pipeline.teacher.labelread import load_teacher_labels

        labelstore.open_store(str(d / "store" / "teacher.zarr"))  # imports and metadata: not the store's memory
        base = _rss_now_mb()
        t = time.perf_counter()
        labels = load_teacher_labels(d / "store" / "teacher.zarr")
        decoded = labels.nbytes / 2**20
        extra = {"decoded_mb": decoded, "rss_increase_mb": peak_rss_mb() - base,
                 "memory_ratio": (peak_rss_mb() - base) / decoded}
    elif stage == "dvc":
        extra = dvc_times(d)
        t = time.perf_counter() - extra["commit_s"] - extra["status_s"]
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb(), **extra}


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def dvc_times(d: Path) -> dict[str, float]:
    """A tiny DVC project whose one stage outputs the store: ``dvc commit`` hashes it,
    ``dvc status`` then checks it (the figure a user sees on every ``dvc repro``)."""
    dvc = [sys.executable, "-m", "dvc"]
    proj = d / "store"
    (proj / "boxes.parquet").unlink(missing_ok=True)
    os.link(d / "boxes.parquet", proj / "boxes.parquet")
    (proj / "dvc.yaml").write_text("stages:\n  teacher_labels:\n    cmd: 'true'\n    deps: [boxes.parquet]\n"
                                   "    outs: [teacher.zarr]\n")
    subprocess.run(dvc + ["init", "--no-scm", "-q", "-f"], cwd=proj, check=True)
    t = time.perf_counter()
    subprocess.run(dvc + ["commit", "-f", "-q"], cwd=proj, check=True)
    commit = time.perf_counter() - t
    t = time.perf_counter()
    out = subprocess.run(dvc + ["status", "-q"], cwd=proj, capture_output=True, text=True)
    status = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"dvc status: {out.stdout}{out.stderr}")
    return {"commit_s": commit, "status_s": status}


def measure(n: int, work: Path, network: str, stages: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    d = make_dataset(work, n).parent
    res: dict[str, dict[str, Any]] = {}
    for stage in stages:
        cmd = [sys.executable, __file__, "--_stage", stage, "--_dir", str(d), "--network", network]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"stage {stage} at N={n} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
        res[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = res[stage]
        print(f"N={n:>7} {stage:<15} {r['seconds']:8.2f} s = {1000 * r['seconds'] / n:7.3f} s per 1k rows, "
              f"peak RSS {r['peak_rss_mb']:7.0f} MiB"
              + "".join(f", {k} {v:.2f}" if isinstance(v, float) else f", {k} {v}" for k, v in r.items()
                        if k not in ("seconds", "peak_rss_mb")), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="rows (repeat for several sizes)")
    ap.add_argument("--network", choices=("stub", "resnet18"), default="stub")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--work", type=Path, default=None, help="folder for the data (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--_stage", help=argparse.SUPPRESS)
    ap.add_argument("--_dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._stage:
        print(json.dumps(run_stage(args._stage, args._dir, args.network)))
        return
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    ns = args.n or [1000, 10000]
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="scale-")
        work = Path(tmp.name)
    print(f"{machine()}; teacher {args.network} (ResNet18 input {SIZE} px, p={P}, s={S}, V={V})", flush=True)
    results = {}
    try:
        for n in ns:
            results[n] = measure(n, work, args.network, stages)
            shutil.rmtree(work / f"n{n}", ignore_errors=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "network": args.network, "results": results}, indent=2))
    if len(ns) >= 2:
        a, b = ns[-2], ns[-1]
        growth = {s: (results[b][s]["seconds"] / b) / (results[a][s]["seconds"] / a) for s in stages}
        print(f"time per row, N={b} vs N={a}: " + ", ".join(f"{s} {g:.2f}" for s, g in growth.items()))
        worst = max(growth, key=growth.get)
        print(f"ratio {growth[worst]:.3f}  (worst: {worst}; target <= 1.2)")


if __name__ == "__main__":
    main()
