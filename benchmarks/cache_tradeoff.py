"""What the teacher-label cache costs and buys: online vs offline distillation, how many views,
which encoding. Students of one recipe (the synthetic default's ``train_student``), one teacher:

  (a) online: the teacher's ensemble on every step's own view (``--online-teacher``);
  (b) offline, V = 1, 2, 4, 8, 16 views per image (float16 store);
  (c) offline at the best V of (b), each compact encoding (uint8, top8, top16, top32).

The V-view stores are the first V views of one V_max store (views are keyed by (seed, sample,
view), so that is what a V-view job computes) written with ``hpekd labels convert``'s code; the
encodings likewise. For each student: test MAE per angle, the paired bootstrap 95 % interval of
its mean-MAE difference to (a) on the same faces, the teacher-network passes spent, the store's
bytes on disk and per image-view, the same at 300W-LP's scale (122,450 images), and the median
student epoch time. Then: the smallest V and the most compact encoding within 1 % of the best
measured setting, and, last line, the best offline setting's MAE ratio to online and its
teacher-compute ratio. Everything also goes to ``OUT/cache_tradeoff.json``.

    python benchmarks/cache_tradeoff.py OUT [--boxes data/boxes.parquet --teacher models/teacher.pt]
    python benchmarks/cache_tradeoff.py OUT --smoke     # tiny, 1 epoch: the test suite's run

Without ``--smoke`` it reads the default pipeline's ``data/boxes.parquet`` and
``models/teacher.pt`` (run ``python3 dev.py repro`` first; paths relative to the working
directory). On 2 CPU cores the full run takes over an hour; run it again with the same OUT to
continue an interrupted run (finished students and stores are kept, a student cut off mid-way
resumes from its last epoch).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from _common import default_params, machine, pipeline_run_dir

SCALE_IMAGES = 122_450  # 300W-LP
VIEWS = (1, 2, 4, 8, 16)
ENCODINGS = ("uint8", "top8", "top16", "top32")
def build_smoke_inputs(out: Path) -> tuple[str, str]:
    """Tiny synthetic data through the real pipeline (synthesize → index → relabel → a 1-epoch
    teacher) in ``out/pipeline``: its boxes table and teacher checkpoint. The table's image roots are
    relative to that folder; the copy returned roots them there, so this process (run from the
    repository) reads the pipeline's images and not whatever lies under its own ``data/``."""
    from _common import SMOKE_PARAMS
    from _pipeline import run_pipeline

    from pipeline.manifest.schema import read_boxes
    from pipeline.relabel.job import write_boxes

    run = run_pipeline(SMOKE_PARAMS, out / "pipeline", until=["train_teacher"])
    df = read_boxes(run.path("data/boxes.parquet"))
    df["root"] = [str(run.out / r) for r in df["root"].astype(str)]
    write_boxes(df, out / "boxes.parquet")
    return str(out / "boxes.parquet"), str(run.path("models/teacher.pt"))


def store_bytes(path: Path) -> int:
    """Bytes on disk of a store's distribution arrays (what sharing it costs beyond ids and views)."""
    from pipeline.teacher.labelread import label_bytes
    from pipeline.teacher.labelstore import encoding_of, open_store

    return int(label_bytes(str(path), encoding_of(open_store(str(path)))))


def student(name: str, out: Path, train, boxes: str, e_cfg) -> dict:
    """Train one student (``train(paths)``, resuming: a finished student is not retrained, one
    cut off mid-way continues from its last epoch), evaluate it on the test rows, keep its
    per-face errors."""
    from pipeline.evaluation.errors import read_errors
    from pipeline.evaluation.evaluate import EvalOutputs, evaluate_checkpoint
    from pipeline.training.outputs import RunPaths

    tag = name.replace(" ", "_").replace(",", "").replace("=", "")
    paths = RunPaths(out / f"{tag}.pt", out / f"{tag}.json", None, out / f"{tag}_timing.csv")
    train(paths)
    res = evaluate_checkpoint(paths.out, boxes, "test", None, e_cfg, EvalOutputs(errors=out / f"{tag}_errors.parquet"))
    with open(paths.timing) as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    logging.info("%s: MAE %.3f", name, res["all"]["mae_mean"])
    return {"name": name, **{k: res["all"][k] for k in ("mae_pitch", "mae_yaw", "mae_roll", "mae_mean")},
            "epoch_s": round(statistics.median(seconds), 2), "minutes": round(sum(seconds) / 60, 2),
            "teacher": json.loads(Path(paths.metrics).read_text())["teacher"],
            "_errors": read_errors(out / f"{tag}_errors.parquet")}


def run(out: Path, boxes: str | None, teacher: str | None, smoke: bool, views: tuple[int, ...],
        encodings: tuple[str, ...]) -> dict:
    from _pipeline import section_config

    from pipeline.teacher.convert import convert_store
    from pipeline.teacher.job import run_teacher_labels
    from pipeline.teacher.labelstore import layout_of, open_store
    from pipeline.training.online import OnlineTargets, OnlineTeacher
    from pipeline.training.stage2 import train_student
    from pipeline.training.targets import StoreTargets

    p = default_params(smoke)
    if smoke:
        boxes, teacher = build_smoke_inputs(out)
    assert boxes and teacher
    tl = dataclasses.replace(section_config(p, "teacher_labels"), views=max(views), encoding="float16")
    full = out / f"labels_V{tl.views}.zarr"
    t0 = time.perf_counter()
    job = run_teacher_labels(tl, teacher, boxes, str(full))  # resumes an interrupted job's store
    job_min = (time.perf_counter() - t0) / 60
    logging.info("teacher job: V=%d, %d crops in %.1f min", tl.views, job.crops, job_min)
    e_cfg = section_config(p, "evaluate")
    cfg = dataclasses.replace(section_config(p, "train_student"), backbone=p["students"][0])
    online = OnlineTargets(OnlineTeacher.from_config(teacher, tl))
    rows: list[dict] = []
    n_images = layout_of(open_store(str(full))).n_rows

    def offline(v: int, enc: str) -> dict:
        store = out / f"labels_V{v}_{enc}.zarr"
        if not (store / "zarr.json").is_file():  # convert_store writes aside, then renames: whole or absent
            convert_store(str(full), str(store), enc, v)
        r = student(f"offline V={v} {enc}", out,
                    lambda paths: train_student(cfg, StoreTargets(str(store)), boxes, paths, resume=True, progress=False), boxes, e_cfg)
        size = store_bytes(store)
        r.update(views=v, encoding=enc, store_bytes=size, bytes_per_image_view=round(size / (n_images * v), 1))
        return r

    for v in views:
        rows.append(offline(v, "float16"))
    best_v = min(rows, key=lambda r: r["mae_mean"])["views"]
    for enc in encodings:
        rows.append(offline(best_v, enc))
    # the online student last: the slowest, and the reference every row is compared with
    rows.insert(0, student("online", out, lambda paths: train_student(cfg, online, boxes, paths, resume=True,
                                                                       progress=False), boxes, e_cfg))
    rows[0].update(views=None, encoding=None, store_bytes=0, bytes_per_image_view=None)

    return summary(rows, smoke, n_images, tl, job_min, cfg.epochs, best_v)


def summary(rows: list[dict], smoke: bool, n_images: int, tl, job_min: float, epochs: int, best_v: int) -> dict:
    """Every row against online on the same faces; the best offline setting and its ratios."""
    from pipeline.evaluation.errors import ERR
    from pipeline.evaluation.uncertainty import paired_difference

    ref = rows[0]["_errors"]
    cols = list(ERR.values())
    for r in rows:
        e = r.pop("_errors")
        if list(e["sample_id"]) != list(ref["sample_id"]):
            raise RuntimeError("students were evaluated on different faces")
        r["vs_online"] = paired_difference(e[cols].to_numpy(), ref[cols].to_numpy()).to_dict()
        r["teacher_passes"] = int(r["teacher"]["network_passes"])
        r["scale_bytes"] = (round(r["bytes_per_image_view"] * r["views"] * SCALE_IMAGES)
                            if r["bytes_per_image_view"] else 0)
    online_row = rows[0]
    best = min(rows[1:], key=lambda r: r["mae_mean"])
    top = min(r["mae_mean"] for r in rows)
    ok = [r for r in rows[1:] if r["mae_mean"] <= 1.01 * top]
    pick = min(ok, key=lambda r: (r["views"], r["bytes_per_image_view"])) if ok else None
    return {
        "smoke": smoke, "machine": machine(), "n_images": n_images, "A": tl.A, "teacher_job_minutes": round(job_min, 2),
        "epochs": epochs, "best_views": best_v, "rows": rows,
        "best_offline": best["name"], "ratio_mae": round(best["mae_mean"] / online_row["mae_mean"], 4),
        "ratio_teacher_compute": round(best["teacher_passes"] / online_row["teacher_passes"], 4),
        "within_1pct_of_best": [r["name"] for r in ok], "pick": pick["name"] if pick else None,
    }


def print_report(rep: dict) -> None:
    print(f"{rep['machine']}; {rep['n_images']} training images, A = {rep['A']}, {rep['epochs']} epochs; "
          f"teacher job {rep['teacher_job_minutes']} min")
    print("| student | pitch | yaw | roll | MAE | Δ vs online [95 % CI] | teacher passes | store bytes | B/image-view "
          "| 300W-LP bytes | epoch s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rep["rows"]:
        d = r["vs_online"]
        ci = "—" if r["name"] == "online" else f"{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        mb = f"{r['store_bytes'] / 1e6:.2f} MB" if r["store_bytes"] else "—"
        scale = f"{r['scale_bytes'] / 1e9:.2f} GB" if r["scale_bytes"] else "—"
        print(f"| {r['name']} | {r['mae_pitch']:.2f} | {r['mae_yaw']:.2f} | {r['mae_roll']:.2f} | {r['mae_mean']:.3f} "
              f"| {ci} | {r['teacher_passes']:,} | {mb} | {r['bytes_per_image_view'] or '—'} | {scale} "
              f"| {r['epoch_s']} |")
    print(f"within 1 % of the best MAE: {', '.join(rep['within_1pct_of_best']) or 'none'}; smallest and most "
          f"compact of them: {rep['pick']}")
    print(f"best offline ({rep['best_offline']}) / online: MAE ratio {rep['ratio_mae']:.3f}, teacher-compute ratio "
          f"{rep['ratio_teacher_compute']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="work folder (default: a temporary one)")
    ap.add_argument("--boxes", default="data/boxes.parquet", help="boxes table of the default pipeline")
    ap.add_argument("--teacher", default="models/teacher.pt", help="stage-1 checkpoint of the default pipeline")
    ap.add_argument("--views", type=int, nargs="+", default=list(VIEWS), help="V values of (b)")
    ap.add_argument("--encodings", nargs="+", default=list(ENCODINGS), help="compact encodings of (c)")
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch (the test suite's run)")
    args = ap.parse_args(argv)
    if not args.smoke:
        for f in (args.boxes, args.teacher):
            if not Path(f).is_file():
                ap.error(f"{f} not found: run `python3 dev.py repro` first (or pass --boxes/--teacher)")
    views = (1, 2) if args.smoke and args.views == list(VIEWS) else tuple(sorted(set(args.views)))
    encodings = ("uint8", "top8") if args.smoke and args.encodings == list(ENCODINGS) else tuple(args.encodings)
    out = pipeline_run_dir(args.out, "cache_tradeoff_")
    rep = run(out, None if args.smoke else args.boxes, None if args.smoke else args.teacher, args.smoke, views,
              encodings)
    (out / "cache_tradeoff.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
