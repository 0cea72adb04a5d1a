"""The GPU suite: one command, ≤ 8 minutes on one H100/H200 with 16 cores, results as JSON and
Markdown in a folder.

    .venv/bin/python benchmarks/device_suite.py OUT_DIR            # on the GPU machine
    .venv/bin/python benchmarks/device_suite.py OUT_DIR --smoke    # same code paths, CPU, tiny, < 1 min

Side by side, each pair alternated in one process (medians and the ratio of medians, see
``_common.alternate``):

1. the teacher-label job end to end (450-px synthesizer JPEGs → Z → device crops → Zarr shards,
   ``pipeline.teacher.job.run_teacher_labels``) vs the bare network on in-memory batches, at the
   paper's setting (ResNet50, 224², p = 15, s = 5, A = 49, V = 8, bf16 + channels-last), eager and
   ``torch.compile`` — ``teacher_throughput.compare_job``;
2. stage-1 and stage-2 training steps (ResNet50, bf16, batch 128) with the real loader (one
   DataLoader worker per CPU core) vs in-memory tensors — ``train_throughput.compare_loader``;
3. ``pytest -m gpu``.

Targets: job ≥ 0.9 × bare, loader ≥ 0.9 × in-memory. A part that would start after the time
budget is skipped and marked so. Writes ``OUT_DIR/device_suite.json`` and ``.md``; the last line
printed is the worst ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _common
from _common import REPO, machine, synth_boxes, write_results, write_stage1_checkpoint

from pipeline.core.config import default_config


@dataclass(frozen=True)
class Preset:
    backbone: str
    size: int
    p: int
    s: int
    views: int
    images: int  # synthesized images
    image_size: int
    job_rows: int  # images per teacher-job run
    job_batch: int
    chunk: int
    compile_modes: tuple[bool, ...]
    train_batch: int
    train_steps: int
    rounds: int
    bare_seconds: float
    device: str
    budget_s: float
    pytest_timeout_s: int


GPU = Preset(backbone="resnet50", size=224, p=15, s=5, views=8, images=512, image_size=450, job_rows=192,
             job_batch=16, chunk=1024, compile_modes=(False, True), train_batch=128, train_steps=10, rounds=3,
             bare_seconds=3.0, device="cuda", budget_s=450.0, pytest_timeout_s=120)
SMOKE = Preset(backbone="resnet18", size=32, p=1, s=1, views=2, images=6, image_size=96, job_rows=6, job_batch=3,
               chunk=0, compile_modes=(False,), train_batch=3, train_steps=2, rounds=2, bare_seconds=0.05,
               device="cpu", budget_s=120.0, pytest_timeout_s=120)


class Suite:
    def __init__(self, preset: Preset, out: Path, work: Path, budget_s: float):
        self.preset, self.out, self.work = preset, out, work
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget_s
        self.results: dict[str, Any] = {"preset": asdict(preset), "machine": machine(), "parts": {}}

    def part(self, name: str, fn: Callable[[], dict[str, Any]], needs_s: float) -> None:
        left = self.deadline - time.perf_counter()
        if left < needs_s:
            self.results["parts"][name] = {"status": f"skipped: {left:.0f} s of the budget left, needs ~{needs_s:.0f} s"}
            print(f"[{name}] skipped (budget)", flush=True)
            return
        t = time.perf_counter()
        try:
            res = {"status": "ok", **fn()}
        except Exception as exc:  # noqa: BLE001 - recorded, the other parts still run
            res = {"status": f"error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        res["seconds"] = round(time.perf_counter() - t, 1)
        self.results["parts"][name] = res
        print(f"[{name}] {res['status']} in {res['seconds']} s", flush=True)
        for line in res.get("lines", []):
            print("   " + line, flush=True)


def teacher_part(pr: Preset, boxes: Path, ck: Path, work: Path, compile_model: bool) -> dict[str, Any]:
    from teacher_throughput import compare_job

    from pipeline.teacher.job import TeacherLabelsConfig

    cfg = default_config(TeacherLabelsConfig, "teacher_labels", p=pr.p, s=pr.s, views=pr.views, shard_rows=pr.job_rows, chunk_rows=1,
                              batch_size=pr.job_batch, chunk=pr.chunk, device=pr.device, amp=True,
                              compile=compile_model, loader_workers=min(8, os.cpu_count() or 1) if pr.device != "cpu" else 0)
    comp = compare_job(cfg, str(ck), str(boxes), pr.size, work, pr.rounds, pr.bare_seconds)
    return {"comparison": comp.to_dict(), "ratio": comp.ratio("teacher job", "bare network"),
            "images_per_s": comp.median("teacher job") / (pr.views * cfg.A), "lines": comp.lines()}


def train_part(pr: Preset, boxes: Path, stage: int, workers: int) -> dict[str, Any]:
    from train_throughput import compare_loader, make_bench

    bench = make_bench(stage, boxes, pr.backbone, pr.size, pr.train_batch, pr.device)
    comp = compare_loader(bench, pr.train_steps, workers, pr.rounds)
    return {"comparison": comp.to_dict(), "ratio": comp.ratio("real loader", "in memory"), "lines": comp.lines()}


def pytest_part(pr: Preset) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=pr.pytest_timeout_s)
        tail, rc = (proc.stdout + proc.stderr).strip().splitlines()[-15:], proc.returncode
    except subprocess.TimeoutExpired:
        tail, rc = [f"timed out after {pr.pytest_timeout_s} s"], 124
    # rc 5 = nothing collected/selected (no gpu tests), which is not a failure here
    return {"returncode": rc, "passed": rc in (0, 5), "lines": tail[-3:], "output_tail": tail}


def markdown(res: dict[str, Any]) -> str:
    pr = res["preset"]
    lines = [f"# device suite ({'smoke, CPU' if res['smoke'] else 'GPU'})", "",
             f"Machine: {res['machine']}. Settings: {pr['backbone']} at {pr['size']}², p = {pr['p']}, s = {pr['s']}, "
             f"V = {pr['views']}, teacher batch {pr['job_batch']} samples, training batch {pr['train_batch']}; "
             f"{pr['rounds']} alternated rounds per pair. Total {res['seconds']:.0f} s.", "",
             "| part | A (median) | B (median) | ratio A/B | target | status |", "|---|---|---|---|---|---|"]
    for name, part in res["parts"].items():
        comp = part.get("comparison")
        if comp:
            (ka, va), (kb, vb) = list(comp["medians"].items())[::-1] if name.startswith("teacher") else list(
                comp["medians"].items())
            ok = "meets" if part["ratio"] >= 0.9 else "below"
            lines.append(f"| {name} | {ka}: {va:.1f} {comp['unit']} | {kb}: {vb:.1f} {comp['unit']} | "
                         f"{part['ratio']:.3f} | ≥ 0.9 ({ok}) | {part['status']} ({part['seconds']} s) |")
        elif name == "pytest -m gpu" and "returncode" in part:
            lines.append(f"| {name} | {' / '.join(part['lines'])} | | | passes | rc {part['returncode']} |")
        else:
            lines.append(f"| {name} | | | | | {part['status'].splitlines()[0]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for device_suite.json and device_suite.md")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, < 1 minute")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole suite (default: preset)")
    ap.add_argument("--skip-pytest", action="store_true")
    args = ap.parse_args()
    pr = SMOKE if args.smoke else GPU
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on CPU")
    if args.smoke:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="device-suite-") as tmp:
        work = Path(tmp)
        suite = Suite(pr, args.out, work, args.budget or pr.budget_s)
        suite.results["smoke"] = args.smoke
        t = time.perf_counter()
        boxes = synth_boxes(work / "data", pr.images, pr.image_size, workers=min(cores, 16))
        job_boxes = work / "job.parquet"
        import pandas as pd

        pd.read_parquet(boxes).iloc[: pr.job_rows].to_parquet(job_boxes, index=False)
        from train_throughput import rows_for

        train_boxes = rows_for(boxes, pr.train_steps * pr.train_batch, work / "train.parquet")
        ck = write_stage1_checkpoint(work / "teacher.pt", pr.backbone, pr.size)
        suite.results["setup_seconds"] = round(time.perf_counter() - t, 1)
        print(f"{suite.results['machine']}; setup {suite.results['setup_seconds']} s", flush=True)
        scale = 0.02 if args.smoke else 1.0  # rough seconds each part needs, for the budget check
        for compile_model in pr.compile_modes:
            mode = "compiled" if compile_model else "eager"
            (work / mode).mkdir()
            suite.part(f"teacher job vs bare ({mode})",
                       lambda c=compile_model, m=mode: teacher_part(pr, job_boxes, ck, work / m, c),
                       needs_s=(120 if compile_model else 60) * scale)
        loader_workers = 1 if args.smoke else cores
        for stage in (1, 2):
            suite.part(f"stage-{stage} training: loader vs in-memory",
                       lambda st=stage: train_part(pr, train_boxes, st, loader_workers), needs_s=40 * scale)
        if not args.skip_pytest:
            suite.part("pytest -m gpu", lambda: pytest_part(pr), needs_s=min(pr.pytest_timeout_s, 60 * scale + 5))
        suite.results["seconds"] = round(time.perf_counter() - suite.t0, 1)
    write_results(args.out, "device_suite", suite.results, markdown(suite.results))
    ratios = {k: v["ratio"] for k, v in suite.results["parts"].items() if "ratio" in v}
    print(f"wrote {args.out / 'device_suite.json'} and .md in {suite.results['seconds']} s")
    if ratios:
        worst = min(ratios, key=ratios.get)
        print(f"ratio {ratios[worst]:.3f}  (worst: {worst}; target >= 0.9)")


if __name__ == "__main__":
    _common.repo_on_path()
    main()
