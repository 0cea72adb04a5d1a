"""Measuring code shared by the benchmarks (one copy of each piece of logic).

* :func:`alternate` runs the compared measurements A, B, … in turn, several rounds in one
  process, and :class:`Comparison` reports their medians and the ratio of medians — robust to a
  shared, noisy machine (a sequential A-then-B run measures the neighbours, not A and B).
* :class:`StepTimer`: runs a benchmark's named steps and keeps their minutes for its report;
  :func:`pipeline_run_dir`: the logging and work folder of a benchmark that runs the pipeline.
* :func:`cpu_seconds`, :func:`peak_rss_mb`: CPU time (this process and its finished children) and
  peak resident memory.
* :func:`synth_boxes`: a ``boxes.parquet`` of 450-px JPEGs from the project's synthesizer, through
  the real ``index`` and ``relabel`` (landmark boxes) code.
* :func:`write_stage1_checkpoint`: a random-init stage-1 checkpoint.

Benchmarks run as scripts (``python benchmarks/x.py``), so this module is imported as ``_common``
with the repository root put on ``sys.path`` by :func:`repo_on_path`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def repo_on_path() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


repo_on_path()

# the pipeline's numerics (HPEKD_NUMERICS=native for the CPU's own): benchmarks import this module
# before numpy and torch, so the pin is in force for them and for every process they start
from pipeline.core import numerics  # noqa: E402
from pipeline.core.config import default_config  # noqa: E402

numerics.pin()


# ----------------------------------------------------------------------------- clocks


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (e.g. DataLoader workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


class StepTimer:
    """``timed(name, fn, *a, **kw)`` runs ``fn`` and records its wall minutes under ``name`` in
    ``timed.minutes`` (logged as it goes: long benchmarks show where they are)."""

    def __init__(self) -> None:
        self.minutes: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        import logging

        t0 = time.perf_counter()
        res = fn(*a, **kw)
        self.minutes[name] = round((time.perf_counter() - t0) / 60, 2)
        logging.info("%s: %.2f min", name, self.minutes[name])
        return res


def pipeline_run_dir(out: str | None, prefix: str) -> Path:
    """Log the benchmark's own steps at INFO (the pipeline's, dask's and numcodecs' at WARNING)
    and return its work folder, created: ``out``, or a new temporary one named ``prefix``."""
    import logging
    import tempfile

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("pipeline", "distributed", "numcodecs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    path = Path(out) if out else Path(tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or of its largest finished child), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def machine() -> str:
    """One line: CPU count, load average, torch build and device (if any)."""
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return f"{os.cpu_count()} CPU cores (load {load}), torch {torch.__version__}, {dev}"


# ----------------------------------------------------------------------------- A/B alternation


@dataclass
class Comparison:
    """Samples of several measurements taken in alternation; ``unit`` is "per second" or similar."""

    name: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return float(statistics.median(self.samples[key]))

    def ratio(self, a: str, b: str) -> float:
        """median(a) / median(b)."""
        return self.median(a) / self.median(b)

    def lines(self) -> list[str]:
        out = []
        width = max(len(k) for k in self.samples)
        for key, vals in self.samples.items():
            note = f"  ({self.notes[key]})" if key in self.notes else ""
            spread = f"min {min(vals):.1f}, max {max(vals):.1f}" if len(vals) > 1 else "1 sample"
            out.append(f"{key:<{width}}  median {self.median(key):10.1f} {self.unit}  [{len(vals)} rounds: {spread}]{note}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "samples": self.samples,
                "medians": {k: self.median(k) for k in self.samples}, "notes": self.notes}


def alternate(name: str, unit: str, measures: Mapping[str, Callable[[], float]], rounds: int,
              warmup: bool = True) -> Comparison:
    """Run every measurement once per round, in turn, for ``rounds`` rounds (after one untimed
    warm-up call each when ``warmup``); odd rounds run in reverse order (A B, B A, …) so a drift of
    the machine during a round does not favour the one that always goes first."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be >= 1")
    keys = list(measures)
    if warmup:
        for k in keys:
            measures[k]()
    comp = Comparison(name, unit, {k: [] for k in keys})
    for r in range(rounds):
        for k in keys if r % 2 == 0 else keys[::-1]:
            comp.samples[k].append(float(measures[k]()))
    return comp


def ratio_line(comp: Comparison, a: str, b: str) -> str:
    return f"ratio {comp.ratio(a, b):.3f}  (median {a} / median {b})"


# ----------------------------------------------------------------------------- data


def synth_boxes(root: Path, n: int, size: int = 450, workers: int = 1, seed: int = 0, repeat: int = 1) -> Path:
    """``root/boxes.parquet``: ``n`` synthesized ``size``-px JPEG faces, indexed as 300W-LP and
    boxed from their landmarks (the real ``index`` and ``relabel`` code). ``repeat`` > 1 lists
    every image that many times (distinct sample ids) for a bigger table at no rendering cost."""
    import pandas as pd

    from pipeline.manifest.index import build_manifest
    from pipeline.manifest.spec import IndexConfig
    from pipeline.relabel.config import RelabelConfig
    from pipeline.relabel.job import relabel, write_boxes
    from pipeline.synth import SynthConfig, synthesize

    root = Path(root)
    synthesize(default_config(SynthConfig, "synthesize", n_train=n, n_test=0, seed=seed, size=size, workers=workers, label_noise={}), root / "synthetic", progress=False)  # timing only: exact labels
    cfg = default_config(IndexConfig, "index", datasets=({"name": "synth", "format": "300w_lp", "root": str(root / "synthetic" / "train"),
                                 "split": "train", "subsets": ["SYNTH"]},), workers=max(1, workers))
    manifest = build_manifest(cfg)
    boxes, _ = relabel(manifest, default_config(RelabelConfig, "relabel", source="landmarks", workers=1), progress=False)
    if repeat > 1:
        parts = []
        for k in range(repeat):
            part = boxes.copy()
            part["sample_id"] = part["sample_id"].astype(str) + ("" if k == 0 else f"~{k}")
            parts.append(part)
        boxes = pd.concat(parts, ignore_index=True)
    path = root / "boxes.parquet"
    write_boxes(boxes, path)
    return path


def write_stage1_checkpoint(path: Path, backbone: str, size: int, bin_sizes: Sequence[int] = (1, 2, 3, 4),
                            regression: bool = True, seed: int = 0) -> Path:
    """A random-init stage-1 checkpoint (``kind: stage1``) at input ``size``², made by the one
    checkpoint builder."""
    import torch

    from pipeline.model.checkpoint import checkpoint_state, save_checkpoint
    from pipeline.model.network import HeadPoseNet, ModelSpec

    torch.manual_seed(seed)
    model = HeadPoseNet(ModelSpec(backbone, tuple(bin_sizes), regression=regression))
    save_checkpoint(path, checkpoint_state("stage1", model, (size, size)))
    return path


def write_results(out_dir: Path, name: str, results: Mapping[str, Any], markdown: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n")


# ----------------------------------------------------------------------------- the synthetic default

# --smoke of the benchmarks that run the pipeline: tiny sizes and one epoch, as an overlay
SMOKE_PARAMS = {
    "synthesize": {"n_train": 24, "n_test": 8, "size": 96, "workers": 1},
    "train_teacher": {"epochs": 1, "input_size": 32, "batch_size": 8, "workers": 0},
    "teacher_labels": {"views": 2, "shard_rows": 16, "chunk_rows": 8, "batch_size": 8, "workers": 0,
                       "loader_workers": 0},
    "train_student": {"epochs": 1, "batch_size": 8, "workers": 0},
    "evaluate": {"batch_size": 16, "workers": 0},
}


def default_params(smoke: bool) -> dict:
    """The synthetic default's complete params, configs/default.yaml (not params.yaml, which may
    hold a protocol's real data), shrunk by :data:`SMOKE_PARAMS` for ``--smoke`` like an overlay
    (an unknown key is an error)."""
    from pipeline.core.overlay import compose, merge

    p, _ = compose(REPO / "configs" / "default.yaml", [])
    if smoke:
        p, _ = merge(p, SMOKE_PARAMS, "--smoke")
    return p
