"""Unlabelled faces from the user's own domain: do they help a student there?

Domain A is the synthetic default (faces in the wild, ``synthesize.domain: wild``) with all its
labels; domain B is another look (``--domain``: ``car``, in-car infrared, or ``lab``, BIWI-like
lab video; docs in pipeline/synth/domain.py) — N unlabelled training images indexed as a user's
``format: images`` folder, and a labelled B test set. One stage-1 teacher, trained on A's labels.
Students of one recipe and backbone (the default ``train_student``):

  (a) A's labels, no distillation (``kd_weight: 0``);
  (b) KD on A only (``unlabelled: false``);
  (c) KD on A + the unlabelled B images (the default recipe);
  (d) as (c) with B's labels (B indexed in its labelled layout): the ceiling;
  (g), (h) a second round: student (b) is the teacher (its label store made by the same teacher
      job), then (g) KD on A + unlabelled B and (h) KD on A only — what the unlabelled images
      give once the teacher is as good on B as the best first-round student;
  (i) as (a) with B's labels: what B's labels give without a teacher (in (d) they weigh
      ce_weight = 0.05 against the teacher's KL on the same rows).

All go through the real pipeline code (synthesize, index, relabel with the default detector,
train_teacher, teacher-labels, train_student, evaluate). Printed: MAE per angle on B's and A's
test faces, the paired bootstrap 95 % interval of each student's mean-MAE difference to (a) on
the same faces, and the fraction of the A→B gap that the unlabelled images close,
((a) − (c)) / ((a) − (d)), with its bootstrap interval over B's test faces. Since (a) has no
distillation, that fraction also counts what KD on A alone gives; the line before the last
separates it: (c) − (b) on B and ((b) − (c)) / ((b) − (d)). Round 2 is compared on B, paired:
(g) − (h) and (g) − (b). Last line: the fraction and the ratio (c)/(a) on B. Everything goes to
``OUT/domain_gain.json`` and the two domains' contact sheet to ``OUT/domains.png``.

    python benchmarks/domain_gain.py OUT [--n-b 1000] [--a-root data/synthetic --teacher models/teacher.pt]
        [--domain car|lab] [--views V]
    python benchmarks/domain_gain.py OUT --smoke      # tiny, 1 epoch: the test suite's run

``--domain``: B's look (``car``, the default: in-car infrared; ``lab``: BIWI-like lab video).
``--views``: teacher views per image (default: ``teacher_labels.views`` of the default params).
``--a-root``/``--teacher``: reuse the default pipeline's synthetic data and teacher as domain A
(it is what a default ``dvc repro`` trains on A's labels); without them both are made here.
Run again with the same OUT to continue an interrupted run: finished steps are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from _common import StepTimer, default_params, machine, pipeline_run_dir

# name: (boxes table, label store, train_student overrides). Store "c2" is made by student (b)
# as the teacher: a second round whose teacher has the student's accuracy on B
STUDENTS = {
    "a: A labels, no KD": ("c", "c", {"kd_weight": 0.0}),
    "b: KD, A only": ("c", "c", {"unlabelled": False}),
    "c: KD, A + unlabelled B": ("c", "c", {}),
    "d: KD, A + labelled B (ceiling)": ("d", "d", {}),
    "g: round 2, (b) teaches, A + unlabelled B": ("c", "c2", {}),
    "h: round 2, (b) teaches, A only": ("c", "c2", {"unlabelled": False}),
    "i: A + labelled B, no KD": ("d", "d", {"kd_weight": 0.0}),
}
ROUND2 = ["g: round 2, (b) teaches, A + unlabelled B", "h: round 2, (b) teaches, A only"]
NO_KD_B = "i: A + labelled B, no KD"
SETS = {"B": "b_test", "A": "wild_test"}


def index_and_relabel(p: dict, a_root: Path, b_root: Path, b_labelled: bool, out: Path) -> str:
    """The boxes table of one variant: A (300W-LP/AFLW2000 layouts), B's training images as
    unlabelled ``images`` (or, ``b_labelled``, in their labelled layout), B's test set."""
    from _pipeline import section_config

    from pipeline.manifest.index import build_manifest
    from pipeline.relabel.job import relabel, write_boxes

    b_train = ({"name": "b_train", "format": "300w_lp", "root": str(b_root / "train"), "split": "train",
                "subsets": ["SYNTH"]} if b_labelled else
               {"name": "b_train", "format": "images", "root": str(b_root / "train" / "SYNTH")})
    datasets = [
        {"name": "wild_train", "format": "300w_lp", "root": str(a_root / "train"), "split": "train", "subsets": ["SYNTH"]},
        {"name": "wild_test", "format": "aflw2000", "root": str(a_root / "test"), "split": "test"},
        b_train,
        {"name": "b_test", "format": "aflw2000", "root": str(b_root / "test"), "split": "test"},
    ]
    manifest = build_manifest(section_config({"index": {**p["index"], "datasets": datasets}}, "index"))
    boxes, _ = relabel(manifest, section_config(p, "relabel"), cache_dir=out / "relabel_cache", progress=False)
    path = out / f"boxes_{'d' if b_labelled else 'c'}.parquet"
    write_boxes(boxes, path)
    return str(path)


def contact(a_root: Path, b_root: Path, path: Path) -> None:
    """Six training faces of each domain, A above B."""
    from pipeline.synth.generate import SUBSET, contact_sheet, sample_name

    def picks(root: Path) -> list[tuple[str, tuple[float, float, float]]]:
        import scipy.io

        out = []
        for i in range(6):
            mat = scipy.io.loadmat(root / "train" / SUBSET / f"{sample_name('train', i)}.mat")
            pose = tuple(float(v) for v in np.degrees(mat["Pose_Para"][0, :3]))
            out.append((str((root / "train" / SUBSET / f"{sample_name('train', i)}.jpg").resolve()), pose))
        return out

    sheet = contact_sheet(Path("/"), picks(a_root) + picks(b_root), tile=160, cols=6)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def gap_closed(a: np.ndarray, c: np.ndarray, d: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """((a) − (c)) / ((a) − (d)) of per-face mean errors on the same faces, with the 95 %
    interval of a bootstrap over the faces (resampled together: paired)."""
    a, c, d = (np.asarray(x, np.float64).mean(1) for x in (a, c, d))
    frac = (a.mean() - c.mean()) / (a.mean() - d.mean())
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    boot = (a[idx].mean(1) - c[idx].mean(1)) / (a[idx].mean(1) - d[idx].mean(1))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"fraction": round(float(frac), 4), "ci_low": round(float(low), 4), "ci_high": round(float(high), 4),
            "n": len(a)}


def synth_domains(out: Path, p: dict, n_b: int, a_root: Path | None, domain: str, timed: StepTimer) -> tuple[Path, Path, int]:
    """Domain A (unless given) and B rendered into ``out``; a folder whose ``synth_info.json``
    already records the same sizes is kept (a rerun of an interrupted benchmark)."""
    from pipeline.synth import synthesize

    s = p["synthesize"]
    n_b_test = max(8, s["n_test"] // 2)
    jobs = {"B": (out / domain, n_b, n_b_test, s["seed"] + 1, domain)}
    if a_root is None:
        jobs["A"] = (out / "wild", s["n_train"], s["n_test"], s["seed"], "wild")
    for name, (root, n_train, n_test, seed, look) in jobs.items():
        info = root / "synth_info.json"
        if info.is_file() and _same_sizes(json.loads(info.read_text()), n_train, n_test):
            continue
        from _pipeline import section_config

        cfg = section_config({"synthesize": {**s, "n_train": n_train, "n_test": n_test, "seed": seed, "domain": look}},
                             "synthesize")
        timed(f"synthesize {name}", synthesize, cfg, root, progress=False)
    return a_root or out / "wild", out / domain, n_b_test


def _same_sizes(info: dict, n_train: int, n_test: int) -> bool:
    return info.get("n_train") == n_train and info.get("n_test") == n_test


def train_students(out: Path, p: dict, tables: dict[str, str], teacher: str, timed: StepTimer, evaluate) -> dict:
    """Every student of :data:`STUDENTS` (resuming: a finished one is not retrained), evaluated."""
    from _pipeline import section_config

    from pipeline.teacher.job import run_teacher_labels
    from pipeline.training.outputs import RunPaths
    from pipeline.training.stage2 import train_student
    from pipeline.training.targets import StoreTargets

    l_cfg = section_config(p, "teacher_labels")
    base = dataclasses.replace(section_config(p, "train_student"), backbone=p["students"][0])
    for k, table in tables.items():
        timed(f"teacher labels ({k})", run_teacher_labels, l_cfg, teacher, table, str(out / f"labels_{k}.zarr"))
    results = {"teacher (stage 1, A)": evaluate(teacher, "teacher")}
    stores = set(tables)  # made above; round 2's once student (b) exists
    for name, (table, store, over) in STUDENTS.items():
        tag = name.split(":")[0]  # no e, f: the recipe knobs measured at commit f03da27 and removed (BENCHMARKS.md)
        if store not in stores:  # round 2's store (c2), taught by student (b); on a rerun the job finds it done
            stores.add(store)
            timed("teacher labels (c2, student b)", run_teacher_labels, l_cfg, str(out / "student_b.pt"), tables["c"],
                  str(out / "labels_c2.zarr"))
        model = out / f"student_{tag}.pt"
        timed(f"student {name}", train_student, dataclasses.replace(base, **over),
              StoreTargets(str(out / f"labels_{store}.zarr")),
              tables[table], RunPaths(model, out / f"student_{tag}.json"), resume=True, progress=False)
        results[name] = evaluate(str(model), tag)
        results[name]["rows"] = json.loads((out / f"student_{tag}.json").read_text())["rows"]
    return results


def compare(results: dict) -> tuple[dict, dict]:
    """Each student against (a) on both domains; the gap fractions and round 2 on B."""
    from pipeline.evaluation.uncertainty import paired_difference

    names = list(STUDENTS)
    ref = results[names[0]]
    for r in results.values():
        for dom in SETS:
            r[dom]["vs_a"] = paired_difference(r[dom]["_errors"], ref[dom]["_errors"]).to_dict()
    gap = gap_closed(*(results[n]["B"]["_errors"] for n in (names[0], names[2], names[3])))
    # (a) has no distillation at all, so the fraction above also counts what KD on A alone gives;
    # what the unlabelled B images add is (c) against (b), and the share of (b)'s gap they close
    err_b = {n: results[n]["B"]["_errors"] for n in names}
    unlabelled = {"c_minus_b": paired_difference(err_b[names[2]], err_b[names[1]]).to_dict(),
                  "gap_after_b": gap_closed(err_b[names[1]], err_b[names[2]], err_b[names[3]]),
                  # round 2: do the unlabelled B images help once the teacher is as good on B as (b)?
                  "round2_g_minus_h": paired_difference(err_b[ROUND2[0]], err_b[ROUND2[1]]).to_dict(),
                  "round2_g_minus_b": paired_difference(err_b[ROUND2[0]], err_b[names[1]]).to_dict(),
                  # (d) learns B's labels at ce_weight against the A teacher's KL; (i) learns them alone
                  "gap_closed_vs_i": gap_closed(err_b[names[0]], err_b[names[2]], err_b[NO_KD_B])}
    for r in results.values():
        for dom in SETS:
            r[dom].pop("_errors")
    return gap, unlabelled


def run(out: Path, n_b: int, a_root: Path | None, teacher: str | None, smoke: bool, domain: str = "car",
        views: int | None = None) -> dict:
    from _pipeline import section_config

    from pipeline.evaluation.errors import ERR, read_errors
    from pipeline.evaluation.evaluate import EvalOutputs, evaluate_checkpoint
    from pipeline.training.outputs import RunPaths
    from pipeline.training.stage1 import train_teacher

    p = default_params(smoke)
    if views is not None:
        p["teacher_labels"]["views"] = views
    timed = StepTimer()
    a_root, b_root, n_b_test = synth_domains(out, p, n_b, a_root, domain, timed)
    contact(a_root, b_root, out / "domains.png")
    tables = {"c": timed("index + relabel (B unlabelled)", index_and_relabel, p, a_root, b_root, False, out),
              "d": timed("index + relabel (B labelled)", index_and_relabel, p, a_root, b_root, True, out)}
    if teacher is None:
        teacher = str(out / "teacher.pt")
        timed("stage 1 on A's labels", train_teacher, section_config(p, "train_teacher"), tables["c"],
              RunPaths(teacher), resume=True, progress=False)
    e_cfg = section_config(p, "evaluate")

    def evaluate(model: str, tag: str) -> dict:
        res = {}
        for dom, name in SETS.items():
            errs = out / f"{tag}_{dom}_errors.parquet"
            r = evaluate_checkpoint(model, tables["c"], "test", [name], e_cfg, EvalOutputs(errors=errs))["all"]
            res[dom] = {**{k: r[k] for k in ("mae_pitch", "mae_yaw", "mae_roll", "mae_mean")},
                        "_errors": read_errors(errs)[list(ERR.values())].to_numpy()}
        return res

    results = train_students(out, p, tables, teacher, timed, evaluate)
    gap, unlabelled = compare(results)
    names = list(STUDENTS)
    a_b, c_b = results[names[0]]["B"]["mae_mean"], results[names[2]]["B"]["mae_mean"]
    return {"smoke": smoke, "machine": machine(), "domain": domain, "views": p["teacher_labels"]["views"],
            "n_b_unlabelled": n_b, "n_b_test": n_b_test, "epochs": p["train_student"]["epochs"],
            "minutes": timed.minutes, "results": results, "gap_closed": gap, "unlabelled_beyond_kd": unlabelled,
            "ratio_c_over_a_B": round(c_b / a_b, 4)}


def print_report(rep: dict) -> None:
    print(f"{rep['machine']}; domain B {rep['domain']}, V = {rep['views']}; {rep['n_b_unlabelled']} unlabelled B images, {rep['n_b_test']} B test faces, "
          f"{rep['epochs']} epochs; minutes: {rep['minutes']}")
    print("| model | B pitch | B yaw | B roll | B MAE | B Δ vs (a) [95 % CI] | A pitch | A yaw | A roll | A MAE "
          "| A Δ vs (a) [95 % CI] |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rep["results"].items():
        cells = []
        for dom in ("B", "A"):
            x = r[dom]
            d = x["vs_a"]
            ci = "—" if name.startswith("a:") else f"{d['delta']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]"
            cells.append(f"{x['mae_pitch']:.2f} | {x['mae_yaw']:.2f} | {x['mae_roll']:.2f} | {x['mae_mean']:.2f} | {ci}")
        print(f"| {name} | {' | '.join(cells)} |")
    u = rep["unlabelled_beyond_kd"]
    gh, gb2 = u["round2_g_minus_h"], u["round2_g_minus_b"]
    print(f"round 2, (b) as the teacher, on B: (g) - (h) {gh['delta']:+.2f} [95 % CI {gh['ci_low']:+.2f}, "
          f"{gh['ci_high']:+.2f}]; (g) - (b) {gb2['delta']:+.2f} [95 % CI {gb2['ci_low']:+.2f}, {gb2['ci_high']:+.2f}]")
    gi = u["gap_closed_vs_i"]
    print(f"gap closed against (i), B's labels without a teacher, ((a)-(c))/((a)-(i)) on B: {gi['fraction']:.3f} "
          f"[95 % CI {gi['ci_low']:.3f}, {gi['ci_high']:.3f}]")
    d, gb = u["c_minus_b"], u["gap_after_b"]
    print(f"what the unlabelled B images add to KD on A, on B: (c) - (b) {d['delta']:+.2f} "
          f"[95 % CI {d['ci_low']:+.2f}, {d['ci_high']:+.2f}]; share of (b)'s gap closed ((b)-(c))/((b)-(d)) "
          f"{gb['fraction']:.3f} [95 % CI {gb['ci_low']:.3f}, {gb['ci_high']:.3f}]")
    g = rep["gap_closed"]
    print(f"gap closed ((a)-(c))/((a)-(d)) on B: {g['fraction']:.3f} [95 % CI {g['ci_low']:.3f}, {g['ci_high']:.3f}]; "
          f"ratio (c)/(a) on B: {rep['ratio_c_over_a_B']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="work folder (default: a temporary one)")
    ap.add_argument("--n-b", type=int, default=1000, help="unlabelled training images of domain B")
    ap.add_argument("--a-root", default=None, help="domain A: an existing synthetic (wild) folder, e.g. data/synthetic")
    ap.add_argument("--teacher", default=None, help="stage-1 checkpoint trained on --a-root's labels")
    ap.add_argument("--domain", default="car", choices=["car", "lab"], help="domain B's look (default: car)")
    ap.add_argument("--views", type=int, default=None, help="teacher views per image (default: the params')")
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch (the test suite's run)")
    args = ap.parse_args(argv)
    if (args.a_root is None) != (args.teacher is None):
        ap.error("--a-root and --teacher go together (the teacher must be trained on that data)")
    if args.views is not None and args.views < 1:
        ap.error(f"--views must be >= 1, got {args.views}")
    if args.n_b < 1:
        ap.error(f"--n-b must be >= 1, got {args.n_b}")
    for f in filter(None, (args.a_root, args.teacher)):
        if not Path(f).exists():
            ap.error(f"{f} not found: run `python3 dev.py repro` first, or leave out --a-root/--teacher")
    out = pipeline_run_dir(args.out, "domain_gain_")
    n_b = min(args.n_b, 24) if args.smoke else args.n_b
    rep = run(out, n_b, Path(args.a_root) if args.a_root else None, args.teacher, args.smoke, args.domain, args.views)
    (out / "domain_gain.json").write_text(json.dumps(rep, indent=2) + "\n")
    print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
