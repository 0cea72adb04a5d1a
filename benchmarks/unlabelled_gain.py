"""Does distillation on unlabelled images (docs/design.md §11) help? Three students, side by side.

On the synthetic default (``configs/default.yaml``, the params.yaml `hpekd params reset` writes), the labels of a seeded
``--fraction`` of the training faces are kept and the rest are blanked, written as a user's
``format: table`` CSV (the relabelled boxes as ``x1..y2``) and run through the real pipeline
code: index → relabel (``source: table``) → stage 1 on the labelled rows only → teacher labels
for every training row → three students of the same recipe and backbone (``train_student``):

  (a) the labelled rows only, no distillation (``kd_weight: 0``),
  (b) KD on the labelled rows only (``unlabelled: false``),
  (c) KD on the labelled + unlabelled rows (the default),

each evaluated on the synthetic test set. Prints per-angle MAE, minutes per part, and on the
last line the ratio of mean MAE (c)/(a) (< 1: the unlabelled images helped). Results also go
to ``OUT/unlabelled_gain.json``. Every student runs the same number of epochs, so (c) sees
more images per epoch: that is what the unlabelled images buy.

    python benchmarks/unlabelled_gain.py [OUT] [--fraction 0.25] [--seed 0] [--smoke]

``--smoke`` (tiny data, 1 epoch; ~1 min on 2 cores) runs in the test suite. The full size is
the default pipeline's (1200 train / 200 test images, 20 epochs: as many steps as the 800 × 30 this
took ~10 min for on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _common import StepTimer, default_params, pipeline_run_dir

from pipeline.core.config import default_config
from pipeline.manifest.rows import image_paths, ok_mask, split_mask

STUDENTS = {
    "a: labelled only, no KD": {"kd_weight": 0.0},
    "b: KD, labelled only": {"unlabelled": False},
    "c: KD, labelled + unlabelled": {},
}


def write_table(boxes: pd.DataFrame, root: Path, fraction: float, seed: int, path: Path) -> dict[str, int]:
    """The user's view of the data: one CSV row per boxed face, angles blank for all but a seeded
    ``fraction`` of the training rows; image paths relative to ``root``."""
    rows = np.flatnonzero(ok_mask(boxes))
    ok = boxes.iloc[rows].reset_index(drop=True)
    image = [str(Path(p).relative_to(root.resolve())) for p in image_paths(boxes, rows, absolute=True)]
    table = pd.DataFrame({"image": image, "pitch": ok["pitch"], "yaw": ok["yaw"], "roll": ok["roll"],
                          "x1": ok["x1"], "y1": ok["y1"], "x2": ok["x2"], "y2": ok["y2"], "split": ok["split"]})
    train = np.flatnonzero(split_mask(ok, "train"))
    rng = np.random.default_rng(seed)
    keep = rng.choice(train, size=max(1, round(fraction * len(train))), replace=False)
    blank = np.setdiff1d(train, keep)
    table.loc[blank, ["pitch", "yaw", "roll"]] = np.nan
    table.to_csv(path, index=False)
    return {"train_labelled": int(len(keep)), "train_unlabelled": int(len(blank)),
            "test": int(split_mask(ok, "test").sum())}


def run(out: Path, fraction: float, seed: int, smoke: bool) -> dict:
    from _pipeline import section_config

    from pipeline.evaluation.evaluate import evaluate_checkpoint
    from pipeline.manifest.index import build_manifest
    from pipeline.relabel.config import RelabelConfig
    from pipeline.relabel.job import relabel, write_boxes
    from pipeline.synth import synthesize
    from pipeline.teacher.job import run_teacher_labels
    from pipeline.training.outputs import RunPaths
    from pipeline.training.stage1 import train_teacher
    from pipeline.training.stage2 import train_student
    from pipeline.training.targets import StoreTargets

    p = default_params(smoke)
    timed = StepTimer()
    minutes = timed.minutes

    timed("synthesize", synthesize, section_config(p, "synthesize"), out / "synthetic", progress=False)
    # the default datasets and detector give the boxes a user would have
    datasets = [{**d, "root": str(out / "synthetic" / Path(d["root"]).name)} for d in p["index"]["datasets"]]
    index = {**p["index"], "datasets": datasets}
    manifest = build_manifest(section_config({"index": index}, "index"))
    boxes, _ = timed("relabel (detector)", relabel, manifest, section_config(p, "relabel"), progress=False)
    counts = write_table(boxes, out / "synthetic", fraction, seed, out / "faces.csv")
    mixed = {**p["index"], "datasets": [{"name": "mine", "format": "table", "root": str(out / "synthetic"),
                                         "table": str(out / "faces.csv")}]}
    manifest = build_manifest(section_config({"index": mixed}, "index"))
    boxes, _ = relabel(manifest, default_config(RelabelConfig, "relabel", source="table", workers=1), progress=False)
    write_boxes(boxes, out / "boxes.parquet")
    bp = str(out / "boxes.parquet")

    timed("stage 1 (labelled rows)", train_teacher, section_config(p, "train_teacher"), bp, RunPaths(out / "teacher.pt"), progress=False)
    timed("teacher labels (all train rows)", run_teacher_labels, section_config(p, "teacher_labels"), str(out / "teacher.pt"), bp,
          str(out / "labels.zarr"))
    e_cfg = section_config(p, "evaluate")
    base = section_config(p, "train_student")
    results: dict[str, dict] = {
        "teacher": evaluate_checkpoint(out / "teacher.pt", bp, "test", None, e_cfg)["all"]}
    for k, (name, over) in enumerate(STUDENTS.items()):
        cfg = dataclasses.replace(base, backbone=p["students"][0], **over)
        model = out / f"student_{'abc'[k]}.pt"
        timed(f"student {name}", train_student, cfg, StoreTargets(str(out / "labels.zarr")), bp,
              RunPaths(model, out / f"student_{'abc'[k]}.json"), progress=False)
        results[name] = {**evaluate_checkpoint(model, bp, "test", None, e_cfg)["all"],
                         "rows": json.loads((out / f"student_{'abc'[k]}.json").read_text())["rows"]}
    a, c = results["a: labelled only, no KD"], results["c: KD, labelled + unlabelled"]
    report = {"smoke": smoke, "fraction": fraction, "seed": seed, "counts": counts, "minutes": minutes,
              "results": results, "ratio_c_over_a": round(c["mae_mean"] / a["mae_mean"], 4)}
    (out / "unlabelled_gain.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="work folder (default: a temporary one)")
    ap.add_argument("--fraction", type=float, default=0.25, help="fraction of training rows that keep their labels")
    ap.add_argument("--seed", type=int, default=0, help="which rows keep their labels")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 epoch (the test suite's run)")
    args = ap.parse_args(argv)
    if not 0 < args.fraction < 1:
        ap.error(f"--fraction must be in (0, 1), got {args.fraction}")
    out = pipeline_run_dir(args.out, "unlabelled_gain_")
    rep = run(out, args.fraction, args.seed, args.smoke)
    n = rep["counts"]
    print(f"{n['train_labelled']} labelled + {n['train_unlabelled']} unlabelled training faces "
          f"({100 * args.fraction:g} % labelled), {n['test']} test faces; minutes: {rep['minutes']}")
    print("| model | pitch | yaw | roll | mean |\n|---|---|---|---|---|")
    for name, r in rep["results"].items():
        print(f"| {name} | {r['mae_pitch']:.2f} | {r['mae_yaw']:.2f} | {r['mae_roll']:.2f} | {r['mae_mean']:.2f} |")
    print(f"ratio (c)/(a) mean MAE: {rep['ratio_c_over_a']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
