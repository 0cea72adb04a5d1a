"""What the label store's integrity checks (docs/design.md §6) cost when the student loads it.

Builds a store of ``--rows`` rows (default 10,000) × V views × 3 angles × 198 bins with random
distributions, then alternates, in one process:

- ``raw``: ``g["probs"][:]`` — the plain zarr read the student used before the checks;
- ``verified``: :func:`pipeline.teacher.labelread.load_teacher_labels` (``.probs()``) — the same read shard by shard,
  plus each shard's sha256 compared with the one recorded by its writer, and every
  distribution checked for finite, non-negative values summing to 1.

    .venv/bin/python benchmarks/digest_cost.py [--rows 10000] [--views 2] [--rounds 5]

Prints both medians in ms per 10k rows and, last, ``ratio <verified / raw>``; the extra ms can
be compared with a student epoch (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
from _common import alternate, machine, ratio_line

from pipeline.teacher import labelstore
from pipeline.teacher.encoding import Encoding
from pipeline.teacher.ensemble import ensemble_size
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.teacher.provenance import Bins, Ensemble, Manifest, TeacherInfo, Views, store_provenance


def make_store(path: Path, rows: int, views: int, shard_rows: int) -> str:
    lay = labelstore.Layout(rows, views, 198, shard_rows, 64)
    attrs = store_provenance(
        teacher=TeacherInfo("0" * 64, "stage1", {"backbone": "resnet18"}, "resnet18", "bin1"),
        bins=Bins(1, 99, 198), ensemble=Ensemble(2, 2, ensemble_size(2, 2)), input_size=(64, 64),
        manifest=Manifest("0" * 64, "boxes.parquet", "train", "ok", rows, 0),
        views=Views(0, views, 0.5, 15.0, "identity", ["flip", "angle_deg"]),
        layout=lay.to_dict(), encoding=Encoding("float16", 198).to_dict(), package="bench",
    ).to_attrs()
    ids = [f"synth/{i:06d}.jpg#0" for i in range(rows)]
    g = labelstore.create_layout(str(path), attrs, ids, np.arange(rows, dtype=np.int64),
                                 np.zeros((rows, views, 2), np.float32))
    rng = np.random.default_rng(0)
    for k in range(lay.n_shards):
        a, b = lay.shard_range(k)
        logits = rng.normal(size=(b - a, views, 3, 198)).astype(np.float32) * 3
        p = np.exp(logits - logits.max(-1, keepdims=True))
        labelstore.write_shard(g, k, (p / p.sum(-1, keepdims=True)).astype(np.float16))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--shard-rows", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "s.zarr", args.rows, args.views, args.shard_rows)
        per10k = 10_000 / args.rows

        def raw() -> float:
            t = time.perf_counter()
            np.asarray(labelstore.open_store(store)["probs"][:])
            return (time.perf_counter() - t) * 1000 * per10k

        def verified() -> float:
            t = time.perf_counter()
            load_teacher_labels(store).probs()
            return (time.perf_counter() - t) * 1000 * per10k

        comp = alternate("label store load", "ms per 10k rows", {"raw": raw, "verified": verified}, args.rounds)
    print(f"# {machine()}; {args.rows} rows, V={args.views}, shards of {args.shard_rows} rows")
    for line in comp.lines():
        print(line)
    print(f"extra for the checks: {comp.median('verified') - comp.median('raw'):.1f} ms per 10k rows")
    print(ratio_line(comp, "verified", "raw"))


if __name__ == "__main__":
    main()
