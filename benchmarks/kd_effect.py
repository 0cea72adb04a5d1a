"""Does the teacher earn its cost? Distillation against its controls under training-label noise.

A sweep over the noise of the training labels (``synthesize.label_noise.train``; the test labels
stay exact): ``s0``, ``s2``, ``s4``, ``s8`` (a random rotation of σ = 0/2/4/8° per axis, one
draw shared by a group of 32 images, as 300W-LP shares one fitted face among ~32 images) and
``s2o10`` (σ 2° plus 10 % outliers). At every setting, students of one recipe and backbone:

  (a) no KD — the control (``students_control``, kd_weight 0);
  (b) KD from the ensemble's label store (``students``);
  (c) KD from the single network: a store made with ``teacher_labels.p: 0`` (A = 1), in a second
      work folder (the shared DVC cache restores its synthesize, relabel and teacher);
  (d) Gaussian soft labels around the (noisy) label, no teacher (``students_soft``,
      ``train_student.soft_label_sigma``);
  (e) a longer schedule for (a) and (b): ``LONG``× the epochs.

Every arm is trained with each of ``SEEDS`` (``train_student.seed``), paired across arms; the
teacher and the stores of a setting are shared by the seeds. Everything runs through the real
pipeline (:func:`_pipeline.run_pipeline`: ``dvc repro`` in a work folder per setting and store;
seeds and schedules run one after the other in that folder, so the store — a persistent output
DVC keeps no run cache for — is made once, and a rerun restores finished students from the run
cache). Per setting, ``OUT/settings/<setting>.json`` holds:

- MAE per arm (mean over seeds) and per seed, and the seed-to-seed SD;
- the contrasts b − a, d − a, b − d, b − c, b − teacher (and e: b − a at the longer schedule),
  each with a 95 % interval from a two-level bootstrap over training seeds and test faces
  (:func:`pipeline.evaluation.uncertainty.seeded_difference`);
- the error against the *exact* training poses of the noisy labels, of the teacher store's
  expectation (view 0, the identity) and of each student (predicted on the training images),
  with the slope per angle (predicted on exact; 1 = right scale).

A setting is written when it finishes; a rerun skips finished settings and continues the
unfinished one where DVC left it. At the end, covering every finished setting of OUT (a sweep
run in pieces ends with one table): ``OUT/kd_effect.json``, ``OUT/kd_effect.md``,
``OUT/kd_effect.png`` (KD effect b − a and d − a against σ) and ``OUT/spread.json`` for
``hpekd report --seed-spread``.

    python benchmarks/kd_effect.py OUT [--settings s0 s2 ...]
    python benchmarks/kd_effect.py OUT --smoke      # tiny: the test suite's run

Sizes are fixed below, before any result was seen (not tuned afterwards).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, pipeline_run_dir
from _pipeline import Run, has_key, run_pipeline

# σ (degrees per axis), outlier share, images per shared draw
SETTINGS: dict[str, tuple[float, float, int]] = {
    "s0": (0.0, 0.0, 32), "s2": (2.0, 0.0, 32), "s4": (4.0, 0.0, 32), "s8": (8.0, 0.0, 32),
    "s2o10": (2.0, 0.10, 32),
}
SEEDS = (0, 1, 2)  # three student seeds per arm: the fewest that give a seed-to-seed SD
BACKBONE = "resnet18"  # the default's student
# Sizes (why), fixed before any result: 5 settings x (teacher + 2 stores + 24 student runs per
# setting, 6 of them LONG x) must run within this benchmark's budget of about an hour of 2 CPU cores
# (the issue allows 4 h; measured cost of one default student epoch: ~13.5 s for 1200 images at
# 64 px). So images and epochs are cut and the input is 48 px (a conv costs ~(48/64)^2 = 0.56x);
# the stage-2 recipe, the bins, the ensemble (p 2, s 2) and the views' distribution are the default's.
N_TRAIN = 300  # default 1200
N_TEST = 300  # default 1000: 300 faces x 3 seeds still resolve a difference of ~0.2-0.3 degrees
INPUT_SIZE = 48  # default 64
EPOCHS = 8  # default 20 (teacher and students alike)
LONG = 2  # arm (e): 2x the epochs; 3x would not fit the budget
VIEWS = 4  # default 16: a student sees EPOCHS views per image, so 4 stored views repeat twice
SOFT_SIGMA = 3.0  # width of the Gaussian label (degrees): the default's soft_label_sigma
SMOKE = {"n_train": 24, "n_test": 8, "epochs": 1, "views": 2, "seeds": (0, 1)}

ARMS = {"a": "no KD", "b": "KD, ensemble", "c": "KD, single network", "d": "Gaussian soft labels",
        "a_long": f"no KD, {LONG}x epochs", "b_long": f"KD, ensemble, {LONG}x epochs"}
CONTRASTS = {"b - a": ("b", "a"), "d - a": ("d", "a"), "b - d": ("b", "d"), "b - c": ("b", "c"),
             "b - teacher": ("b", "teacher"), "b_long - a_long": ("b_long", "a_long")}
ROLE_FILE = {"a": "nokd", "b": "kd", "d": "soft", "c": "kd"}  # metrics/<run>/eval/<role>-<bb>.json
CHECKPOINT = {"nokd": "student_nokd", "kd": "student", "soft": "student_soft"}

log = logging.getLogger("kd_effect")


def overlay(setting: tuple[float, float, int], sizes: Mapping[str, Any], seed: int, *, epochs: int,
            single: bool = False, soft: bool = True, control: bool = True) -> dict[str, Any]:
    """The params overlay of one folder run: sizes, noise, which students, seed and schedule."""
    sigma, outliers, group = setting
    synth: dict[str, Any] = {"n_train": sizes["n_train"], "n_test": sizes["n_test"]}
    if has_key("synthesize.label_noise"):
        synth["label_noise"] = {"train": {"sigma": sigma, "outliers": outliers, "group": group}}
    elif sigma or outliers:
        raise SystemExit("this tree has no synthesize.label_noise: only the exact-label setting s0 can run")
    student: dict[str, Any] = {"epochs": epochs, "seed": seed}
    over: dict[str, Any] = {
        "synthesize": synth, "train_teacher": {"epochs": sizes["epochs"]},
        "teacher_labels": {"views": sizes["views"], **({"p": 0} if single else {})},
        "students": [BACKBONE], "students_control": [BACKBONE] if control else [], "students_online": [],
    }
    if has_key("students_soft"):
        over["students_soft"] = [BACKBONE] if soft else []
        student["soft_label_sigma"] = SOFT_SIGMA
    over["train_student"] = student
    return _merge(dict(sizes.get("extra", {})), over)  # the sizes and arms win over the smoke's extras


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def targets(roles: list[str]) -> list[str]:
    return ["evaluate_teacher", *(f"evaluate_student{'' if r == 'kd' else '_' + r}@{BACKBONE}" for r in roles)]


def read_arm(run: Run, role: str) -> dict[str, Any]:
    """One student of a finished folder run: test MAE, per-face errors, exact-pose readout."""
    ev = run.eval(role, BACKBONE)["all"]
    err = run.errors(role, BACKBONE).sort_values("sample_id")
    model = run.path(f"models/{CHECKPOINT[role]}_{BACKBONE}.pt")
    return {"mae": ev["mae_mean"], "mae_angles": [ev[f"mae_{a}"] for a in ("pitch", "yaw", "roll")],
            "errors": err[["err_pitch", "err_yaw", "err_roll"]].to_numpy(), "ids": err["sample_id"].tolist(),
            "train_exact": student_vs_exact(run, model)}


def run_seeds(name: str, setting: tuple[float, float, int], out: Path, sizes: Mapping[str, Any]) -> dict:
    """All arms of one setting, seed by seed: {arm: [per-seed result]} plus the teacher."""
    soft = has_key("students_soft")
    arms: dict[str, list[dict]] = {k: [] for k in ARMS}
    ens, single, cache = out / name / "ensemble", out / name / "single", out / "dvc-cache"
    for seed in sizes["seeds"]:
        roles = ["nokd", "kd", *(["soft"] if soft else [])]
        run = run_pipeline(overlay(setting, sizes, seed, epochs=sizes["epochs"]), ens, targets(roles), cache)
        for arm in ("a", "b", "d") if soft else ("a", "b"):
            arms[arm].append(read_arm(run, ROLE_FILE[arm]))
        run = run_pipeline(overlay(setting, sizes, seed, epochs=LONG * sizes["epochs"], soft=False), ens,
                           targets(["nokd", "kd"]), cache)
        arms["a_long"].append(read_arm(run, "nokd"))
        arms["b_long"].append(read_arm(run, "kd"))
        one = run_pipeline(overlay(setting, sizes, seed, epochs=sizes["epochs"], single=True, soft=False,
                                   control=False), single, targets(["kd"]), cache)
        arms["c"].append(read_arm(one, "kd"))
    run = run_pipeline(overlay(setting, sizes, sizes["seeds"][0], epochs=sizes["epochs"]), ens, ["evaluate_teacher"], cache)
    return {"arms": {k: v for k, v in arms.items() if v}, "teacher": read_teacher(run)}


def read_teacher(run: Run) -> dict[str, Any]:
    """The teacher network's test errors and the readout of its stored labels against the truth."""
    bb = run.params["train_teacher"]["backbone"]
    ev = run.eval("base", bb)["all"]
    err = run.errors("base", bb).sort_values("sample_id")
    return {"mae": ev["mae_mean"], "errors": err[["err_pitch", "err_yaw", "err_roll"]].to_numpy(),
            "ids": err["sample_id"].tolist(), "labels_exact": labels_vs_exact(run),
            "store_exact": store_vs_exact(run, run.path("labels/teacher.zarr"))}


# ----------------------------------------------------------------------------- the exact poses


def exact_angles(run: Run, rows: np.ndarray) -> np.ndarray:
    """[n, 3] exact (noise-free) poses of boxes rows ``rows``, degrees, from the synthesizer's own
    reader (:func:`pipeline.synth.noise.exact_angles`), matched by image path."""
    from pipeline.manifest.schema import read_boxes
    from pipeline.synth.noise import exact_angles as reader

    table = reader(run.path(f"data/{run.params['synthetic'][0]}")).set_index("image_path")
    paths = read_boxes(run.path("data/boxes.parquet"))["image_path"].astype(str).to_numpy()[rows]
    return table.loc[paths, ["pitch", "yaw", "roll"]].to_numpy(np.float64)


def readout(pred: np.ndarray, exact: np.ndarray) -> dict[str, Any]:
    """MAE and slope per angle of ``pred`` against the exact poses."""
    from pipeline.evaluation.evaluate import angle_stats, mae_table

    return {**{k: round(v, 4) for k, v in mae_table(pred, exact).items()},
            **{k: v for k, v in angle_stats(pred, exact, None).items() if k.startswith("slope")}}


def labels_vs_exact(run: Run) -> dict[str, Any]:
    from pipeline.manifest.rows import row_angles, select
    from pipeline.manifest.schema import read_boxes

    df = read_boxes(run.path("data/boxes.parquet"))
    rows = select(df, "train").rows
    return readout(row_angles(df, rows), exact_angles(run, rows))


def store_vs_exact(run: Run, store: Path) -> dict[str, Any]:
    """The expectation of the store's view-0 (identity) distributions against the exact poses."""
    from pipeline.core.bins import BinGrid
    from pipeline.teacher.labelread import load_teacher_labels

    labels = load_teacher_labels(store)
    bins = labels.attrs["bins"]
    centers = BinGrid(bins["b"], bins["theta"]).centers.astype(np.float64)
    probs = labels.targets(np.arange(len(labels.rows)), 0).astype(np.float64)  # [N, 3, Q]
    return readout((probs * centers).sum(-1), exact_angles(run, labels.rows))


def student_vs_exact(run: Run, model: Path) -> dict[str, Any]:
    """A checkpoint's predictions on the training images against their exact poses."""
    from _pipeline import section_config

    from pipeline.core.device import resolve_device
    from pipeline.data.datasets import PoseDataset
    from pipeline.evaluation.evaluate import predict_dataset
    from pipeline.manifest.rows import RowQuery
    from pipeline.manifest.schema import read_boxes
    from pipeline.model.checkpoint import input_size_of, model_from_checkpoint

    net, state = model_from_checkpoint(model)
    df = read_boxes(run.path("data/boxes.parquet"))
    df["root"] = [str(run.out / r) for r in df["root"].astype(str)]
    ds = PoseDataset(df, RowQuery("train"), input_size_of(state), train=False, source="boxes")
    cfg = section_config(run.params, "evaluate")
    pred = predict_dataset(net, ds, cfg, resolve_device(cfg.device))
    return readout(pred, exact_angles(run, ds.rows))


# ----------------------------------------------------------------------------- one setting's rows


def summarize(name: str, setting: tuple[float, float, int], res: dict) -> dict[str, Any]:
    """The setting's JSON rows: MAE per arm, seed SD, contrasts with seed-and-face intervals,
    the exact-pose readout."""
    from pipeline.evaluation.uncertainty import seeded_difference

    arms, teacher = res["arms"], res["teacher"]
    for per_seed in arms.values():
        if any(r["ids"] != teacher["ids"] for r in per_seed):
            raise RuntimeError(f"{name}: the arms were evaluated on different test faces")
    stack = {k: np.stack([r["errors"] for r in v]) for k, v in arms.items()}
    stack["teacher"] = teacher["errors"][None]
    rows = {k: {"label": ARMS[k], "mae": round(statistics.fmean(r["mae"] for r in v), 4),
                "mae_per_seed": [round(r["mae"], 4) for r in v],
                "seed_sd": round(statistics.stdev(r["mae"] for r in v), 4) if len(v) > 1 else None,
                "train_exact": [r["train_exact"] for r in v]} for k, v in arms.items()}
    contrasts = {c: {**seeded_difference(stack[x], stack[y]).to_dict(),
                     "seed_sd": _delta_sd(arms[x], arms.get(y))}
                 for c, (x, y) in CONTRASTS.items() if x in stack and y in stack}
    sigma, outliers, group = setting
    return {"setting": name, "sigma": sigma, "outliers": outliers, "group": group, "n_test": len(teacher["ids"]),
            "seeds": len(next(iter(arms.values()))), "arms": rows, "teacher": {"mae": round(teacher["mae"], 4)},
            "contrasts": contrasts, "labels_exact": teacher["labels_exact"], "store_exact": teacher["store_exact"]}


def _delta_sd(a: list[dict], b: list[dict] | None) -> float | None:
    """SD over seeds of the paired difference of mean MAE (None without a second seed)."""
    if b is None or len(a) < 2:
        return None
    return round(statistics.stdev(x["mae"] - y["mae"] for x, y in zip(a, b)), 4)


def run_setting(name: str, out: Path, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """A finished setting's rows (``OUT/settings/<name>.json``), made now when missing."""
    done = out / "settings" / f"{name}.json"
    if done.is_file():
        log.info("%s: kept from %s", name, done)
        return json.loads(done.read_text())
    rows = summarize(name, SETTINGS[name], run_seeds(name, SETTINGS[name], out, sizes))
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


# ----------------------------------------------------------------------------- the report


def markdown(rep: dict) -> str:
    arm_keys = [k for k in ARMS if any(k in s["arms"] for s in rep["settings"])]
    lines = [f"{rep['machine']}; {rep['sizes']}", "",
             "| setting | teacher | " + " | ".join(f"({k}) {ARMS[k]}" for k in arm_keys) + " |",
             "|---|---|" + "---|" * len(arm_keys)]
    for s in rep["settings"]:
        cells = [f"{s['arms'][k]['mae']:.3f} ± {s['arms'][k]['seed_sd'] or 0:.3f}" if k in s["arms"] else "—"
                 for k in arm_keys]
        lines.append(f"| {s['setting']} | {s['teacher']['mae']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "| setting | " + " | ".join(CONTRASTS) + " | labels vs exact | store vs exact |",
              "|---|" + "---|" * (len(CONTRASTS) + 2)]
    for s in rep["settings"]:
        cells = [(lambda d: f"{d['delta']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]")(s["contrasts"][c])
                 if c in s["contrasts"] else "—" for c in CONTRASTS]
        lines.append(f"| {s['setting']} | " + " | ".join(cells)
                     + f" | {s['labels_exact']['mae_mean']:.2f} | {s['store_exact']['mae_mean']:.2f} |")
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    """The KD effect (b − a) and the soft-label effect (d − a) against σ, with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c, colour in (("b - a", "C0"), ("d - a", "C1"), ("b_long - a_long", "C2")):
        # noise-only settings as a line over σ; an outlier setting as an open marker beside its σ
        # (it is not a point of that curve)
        for outliers, fmt, shift in ((False, "o-", 0.0), (True, "s", 0.25)):
            rows = sorted(((s["sigma"], s["contrasts"][c]) for s in rep["settings"]
                           if c in s["contrasts"] and (s["outliers"] > 0) == outliers), key=lambda r: r[0])
            if not rows:
                continue
            x = np.array([r[0] for r in rows]) + shift
            d = np.array([[r[1]["delta"], r[1]["ci_low"], r[1]["ci_high"]] for r in rows])
            ax.errorbar(x, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], fmt=fmt, color=colour,
                        capsize=3, mfc="none" if outliers else colour,
                        label=f"{c}, with outliers" if outliers else c)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training-label noise σ (°); □ with outliers, at σ + 0.25")
    ax.set_ylabel("Δ test MAE (°), < 0: helps")
    ax.legend(fontsize=7, ncol=2, loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def spread(rep: dict) -> dict[str, Any]:
    """The seed-to-seed spread for `hpekd report --seed-spread`: SD of a student's MAE and of the
    KD − no-KD difference, pooled (root mean square) over the settings."""
    def pooled(values: list[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return round(float(np.sqrt(np.mean(np.square(v)))), 4) if v else None

    return {"source": f"benchmarks/kd_effect.py, {len(rep['settings'])} setting(s), {len(rep['sizes']['seeds'])} seeds",
            "student_sd": pooled([s["arms"][k]["seed_sd"] for s in rep["settings"] for k in ("a", "b")
                                  if k in s["arms"]]),
            "delta_sd": pooled([s["contrasts"]["b - a"]["seed_sd"] for s in rep["settings"]])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="work folder (default: a temporary one); rerun it to continue")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="settings to run (default: all)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 epoch, 2 seeds (the test suite's run)")
    ap.add_argument("--spread", help="also write the seed spread JSON here (default OUT/spread.json)")
    args = ap.parse_args(argv)
    out = pipeline_run_dir(args.out, "kd_effect_")
    sizes: dict[str, Any] = ({**SMOKE, "extra": _smoke_extra()} if args.smoke else
                             {"n_train": N_TRAIN, "n_test": N_TEST, "epochs": EPOCHS, "views": VIEWS, "seeds": SEEDS,
                              "extra": {"train_teacher": {"input_size": INPUT_SIZE}}})
    smoke_names = ["s2"]  # one noisy setting: every arm and the noise path, in minutes
    names = args.settings or (smoke_names if args.smoke else list(SETTINGS))
    # the report covers every finished setting of OUT, not only this call's: a sweep run in pieces
    # (`--settings s8`, later `--settings s4`) ends with one table
    shown = [n for n in SETTINGS if n in names or (out / "settings" / f"{n}.json").is_file()]
    rep = {"smoke": args.smoke, "machine": machine(),
           "sizes": dict(sizes) | {"long": LONG, "soft_sigma": SOFT_SIGMA},
           "settings": [run_setting(n, out, sizes) for n in shown]}
    md = markdown(rep)
    (out / "kd_effect.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    (out / "kd_effect.md").write_text(md + "\n")
    Path(args.spread or out / "spread.json").write_text(json.dumps(spread(rep), indent=2) + "\n")
    plot(rep, out / "kd_effect.png")
    print(md)
    return 0


def _smoke_extra() -> dict[str, Any]:
    """The smoke's overlay beyond the sizes: the benchmarks' shared tiny settings."""
    from _common import SMOKE_PARAMS

    return {k: v for k, v in SMOKE_PARAMS.items() if k != "synthesize"} | {
        "synthesize": {k: v for k, v in SMOKE_PARAMS["synthesize"].items() if k not in ("n_train", "n_test")}}


if __name__ == "__main__":
    sys.exit(main())
