"""The Table-5 report: MAE of every model that was run, per test set, as Markdown + a bar chart.

Naming convention of the evaluation metrics it reads (one JSON file per evaluated model):

    <metrics-dir>/**/<role>-<backbone>.json      e.g. metrics/eval/base-resnet50.json
                                                       metrics/eval/ensemble-resnet50.json
                                                       metrics/eval/kd-resnet18.json

``role`` is ``base`` (the stage-1 network, row ``Base-<backbone>``), ``ensemble`` (the
convolutional ensemble of the stage-1 network at the configured p, s, row
``Ensemble-<backbone>``), ``kd`` (a stage-2 student, row ``KD-<backbone>``), ``online`` (the
same student distilled from the teacher run online, row ``KD-online-<backbone>``) or ``nokd``
(the same student trained without KD); ``backbone`` is a torchvision ResNet name. Other JSON files
under the directory (training curves, DVC metrics of other stages) are ignored. The file body
is exactly what ``hpekd evaluate`` writes (key names in :mod:`pipeline.evaluation.schema`):
``{"kind", "backbone", "split", "datasets": {"<test set>": {"mae_pitch", "mae_yaw", "mae_roll",
"mae_mean", "slope_*", "r_*", ["baseline_mae_*",] "n", "dropped"}}, "all": {...}}``; ``kind`` and
``backbone`` must agree with the file name (``kd``/``online``/``nokd`` ↔ a ``student`` checkpoint,
``base``/``ensemble`` ↔ ``stage1``). A missing or unknown key is refused with one line naming
the file and the key: rerun ``hpekd evaluate`` to rewrite the file.

The Ensemble row can also come from the output of ``hpekd ensemble-grid`` (its JSON
``{"p_max", "s", "best", "single", "rows": [{"dataset", "p", "s", "A", "n", "mae_pitch",
"mae_yaw", "mae_roll", "mae_mean"}, …]}``): the rows at the (p, s) that made the teacher labels
become ``Ensemble-<backbone>`` (:func:`ensemble_row_from_grid`; dvc.yaml passes params
``teacher_labels.p``/``.s`` and ``train_teacher.backbone`` to ``hpekd report``).

Rows are ordered Base, Ensemble, KD and by backbone depth inside each group, like the
paper's Table 5; a model that was not evaluated on a test set shows "–" there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.angles import ANGLES
from pipeline.core.io import atomic_path, write_json
from pipeline.evaluation import schema as keys
from pipeline.evaluation.comparisons import Comparison, Errors, compare, interval_text, to_metrics, verdict_phrase
from pipeline.evaluation.errors import read_errors
from pipeline.evaluation.figures import bar_chart
from pipeline.evaluation.uncertainty import Difference

log = logging.getLogger(__name__)

ROLES = {"mean": "Predict the training mean", "base": "Base", "ensemble": "Ensemble", "kd": "KD",
         "online": "KD-online", "nokd": "No-KD"}
STUDENT_ROLES = ("kd", "online", "nokd")  # evaluations of stage-2 checkpoints
BACKBONE_RE = r"resnet\d+"
FILE_RE = re.compile(rf"^(base|ensemble|kd|online|nokd)-({BACKBONE_RE})\.json$")
RERUN_EVALUATE = "rerun `hpekd evaluate` to rewrite it"
RERUN_GRID = "rerun `hpekd ensemble-grid` (the ensemble_grid stage) to rewrite it"


@dataclass(frozen=True)
class Result:
    """MAE (degrees) of one model on one test set."""

    pitch: float
    yaw: float
    roll: float
    mean: float
    n: int | None = None


@dataclass(frozen=True)
class Row:
    role: str  # mean | base | ensemble | kd | online | nokd
    backbone: str
    results: dict[str, Result]  # test set -> MAE
    source: str  # the JSON file it came from
    # test set -> MAE of predicting the training mean, as `hpekd evaluate` records it
    baselines: dict[str, Result] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.role == "mean":
            return ROLES["mean"]
        if self.role == "nokd":
            return f"Student-{display_backbone(self.backbone)} without KD"
        return f"{ROLES[self.role]}-{display_backbone(self.backbone)}"


@dataclass(frozen=True)
class Evaluation:
    """One parsed ``hpekd evaluate`` file."""

    kind: str  # checkpoint kind: stage1 | student
    backbone: str
    results: dict[str, Result]  # test set -> MAE of the model
    baselines: dict[str, Result]  # test set -> MAE of predicting the training mean (when recorded)


def display_backbone(name: str) -> str:
    m = re.fullmatch(r"resnet(\d+)", name)
    return f"ResNet{m.group(1)}" if m else name


def _depth(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc})") from exc


def _check_keys(obj: Any, required: tuple[str, ...], where: str, fix: str, optional: tuple[str, ...] = ()) -> None:
    """``obj`` is a mapping with every ``required`` key, all or none of ``optional`` and nothing else."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with keys {list(required)}, got {type(obj).__name__}; {fix}")
    missing = [k for k in required if k not in obj]
    if any(k in obj for k in optional):
        missing += [k for k in optional if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}; {fix}")
    unknown = [k for k in obj if k not in required and k not in optional]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected {list(required + optional)}); {fix}")


def _number(obj: dict[str, Any], key: str, where: str, fix: str) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key!r} is {value!r}, expected a number; {fix}")
    return float(value)


def _count(obj: dict[str, Any], key: str, where: str, fix: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key!r} is {value!r}, expected a whole number; {fix}")
    return value


def _block(block: Any, where: str) -> tuple[Result, Result | None]:
    """One test set's block of ``hpekd evaluate`` → (model MAE, training-mean MAE or None)."""
    _check_keys(block, keys.BLOCK_KEYS, where, RERUN_EVALUATE, optional=keys.BASELINE_KEYS)
    n = _count(block, keys.N, where, RERUN_EVALUATE)
    mae = [_number(block, keys.MAE[a], where, RERUN_EVALUATE) for a in ANGLES]
    result = Result(*mae, _number(block, keys.MAE_MEAN, where, RERUN_EVALUATE), n)
    if keys.BASELINE_MEAN not in block:
        return result, None
    base = [_number(block, keys.BASELINE[a], where, RERUN_EVALUATE) for a in ANGLES]
    return result, Result(*base, sum(base) / 3, n)


def parse_eval(data: Any, where: str = "metrics") -> Evaluation:
    """The JSON of ``hpekd evaluate`` → :class:`Evaluation`; anything else is a ValueError naming ``where``."""
    _check_keys(data, keys.EVAL_KEYS, where, RERUN_EVALUATE)
    for key in (keys.KIND, keys.BACKBONE):
        if not isinstance(data[key], str):
            raise ValueError(f"{where}: {key!r} is {data[key]!r}, expected a name; {RERUN_EVALUATE}")
    sets = data[keys.DATASETS]
    if not isinstance(sets, dict) or not sets:
        raise ValueError(f"{where}: {keys.DATASETS!r} holds no test set ({sets!r}); {RERUN_EVALUATE}")
    results, baselines = {}, {}
    for name, block in sets.items():
        results[name], base = _block(block, f"{where} {keys.DATASETS}[{name!r}]")
        if base is not None:
            baselines[name] = base
    _block(data[keys.ALL], f"{where} {keys.ALL!r}")  # checked like the others; the table shows test sets only
    return Evaluation(data[keys.KIND], data[keys.BACKBONE], results, baselines)


def _grid_results(rows: list[Any], p: int, s: int, where: str) -> dict[str, Result]:
    """The grid rows at (p, s), by test set; every row is checked against the schema."""
    results = {}
    for i, r in enumerate(rows):
        at = f"{where} {keys.GRID_ROWS}[{i}]"
        _check_keys(r, keys.GRID_ROW_KEYS, at, RERUN_GRID)
        if (_count(r, keys.ROW_P, at, RERUN_GRID), _count(r, keys.ROW_S, at, RERUN_GRID)) == (p, s):
            mae = [_number(r, keys.MAE[a], at, RERUN_GRID) for a in ANGLES]
            results[str(r[keys.ROW_DATASET])] = Result(*mae, _number(r, keys.MAE_MEAN, at, RERUN_GRID),
                                                     _count(r, keys.N, at, RERUN_GRID))
    return results


def ensemble_row_from_grid(path: str | os.PathLike[str], p: int, s: int, backbone: str) -> Row:
    """The Ensemble row from an ``hpekd ensemble-grid`` JSON at the labels' (p, s)."""
    src = Path(path)
    if not src.is_file():
        raise ValueError(f"ensemble grid {str(src)!r} not found: run the ensemble_grid stage or drop --ensemble-grid")
    if not re.fullmatch(BACKBONE_RE, backbone):
        raise ValueError(f"backbone {backbone!r} of the ensemble row is not a ResNet name (e.g. resnet50)")
    data = _load_json(src)
    where = repr(str(src))
    _check_keys(data, keys.GRID_KEYS, where, RERUN_GRID)
    rows = data[keys.GRID_ROWS]
    if not isinstance(rows, list):
        raise ValueError(f"{where}: {keys.GRID_ROWS!r} is not a list; {RERUN_GRID}")
    results = _grid_results(rows, p, s, where)
    if not results:
        have = sorted({(r[keys.ROW_P], r[keys.ROW_S]) for r in rows})
        raise ValueError(
            f"{where} has no ensemble with p={p}, s={s} (the teacher labels' setting); it has {have[:12]}: "
            "make ensemble_grid.p_max >= p and include s in ensemble_grid.s"
        )
    return Row("ensemble", backbone, results, str(src))


def _check_identity(ev: Evaluation, key: tuple[str, str], path: Path) -> None:
    """``hpekd evaluate`` records the checkpoint's kind and backbone: they must fit the name."""
    want_kind = "student" if key[0] in STUDENT_ROLES else "stage1"
    if ev.kind != want_kind:
        raise ValueError(
            f"{str(path)!r} evaluates a {ev.kind!r} checkpoint but its name says {key[0]!r} "
            f"(expected kind {want_kind!r}): rename it or fix the evaluate stage's --model"
        )
    if ev.backbone != key[1]:
        raise ValueError(
            f"{str(path)!r} evaluates a {ev.backbone} but its name says {key[1]}: rename it or fix --model"
        )


def _duplicate(key: tuple[str, str], first: str, second: str) -> ValueError:
    return ValueError(f"two evaluations of {ROLES[key[0]]}-{key[1]}: {first!r} and {second!r}; "
                      "keep one per role and backbone")


def collect(metrics_dir: str | os.PathLike[str], extra: list[Row] | None = None,
            only: list[str] | None = None) -> list[Row]:
    """Every ``<role>-<backbone>.json`` under ``metrics_dir`` (plus ``extra`` rows), in Table-5
    order. ``only``: read just these files (e.g. those the pipeline declares for the current
    params), each of which must exist; other files in the folder are ignored."""
    root = Path(metrics_dir)
    if only is None and not root.is_dir():
        raise ValueError(f"metrics directory {str(root)!r} not found: run the evaluate stages first")
    for f in only or []:
        if not Path(f).is_file():
            raise ValueError(f"evaluation file {f!r} is missing: run its evaluate stage first (`dvc repro`)")
    files = sorted(Path(f) for f in only) if only is not None else sorted(root.rglob("*.json"))
    seen: dict[tuple[str, str], str] = {}
    rows = []
    for path in files:
        m = FILE_RE.match(path.name)
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if key in seen:
            raise _duplicate(key, seen[key], str(path))
        seen[key] = str(path)
        ev = parse_eval(_load_json(path), repr(str(path)))
        _check_identity(ev, key, path)
        rows.append(Row(key[0], key[1], ev.results, str(path), ev.baselines))
    for row in extra or []:
        key = (row.role, row.backbone)
        if key in seen:
            raise _duplicate(key, seen[key], row.source)
        seen[key] = row.source
        rows.append(row)
    if not rows:
        raise ValueError(
            f"no evaluation metrics under {str(root)!r}: expected files named <role>-<backbone>.json "
            f"with role in {sorted(set(ROLES) - {'mean'})} (e.g. base-resnet50.json, kd-resnet18.json)"
        )
    mean = _mean_row(rows)
    if mean is not None:
        rows.append(mean)
    order = list(ROLES)
    rows.sort(key=lambda r: (order.index(r.role), _depth(r.backbone), r.backbone))
    return rows


def _mean_row(rows: list[Row]) -> Row | None:
    """The "predict the training mean" row from the baselines ``hpekd evaluate`` records."""
    for row in rows:
        if row.role in ("base", *STUDENT_ROLES) and row.baselines:
            return Row("mean", "", row.baselines, row.source)
    return None


def findings(rows: list[Row], comparisons: list[Comparison] | None = None) -> list[str]:
    """Plain sentences comparing the rows on each test set. With ``comparisons`` (paired
    intervals), a method "beats" another only when its interval lies below 0; without them the
    numbers are given with no verdict."""
    found = {(c.test_set, c.a, c.b): c.diff for c in comparisons or []}
    out = []
    for t in test_sets(rows):
        by = {(r.role, r.backbone): r.results[t].mean for r in rows if t in r.results}
        base = next((k for k in by if k[0] == "base"), None)
        for key, v in sorted(by.items()):
            role, b = key
            if role == "ensemble" and base is not None:
                out.append(f"{t}: the ensemble {_versus(found.get((t, key, base)), v, by[base], 'the single network')}.")
            if role == "kd" and base is not None:
                line = f"{t}: KD-{display_backbone(b)} {_versus(found.get((t, key, base)), v, by[base], 'its teacher')}"
                nokd = ("nokd", b)
                if nokd in by:
                    line += " and " + _versus(found.get((t, key, nokd)), v, by[nokd],
                                              "the same student trained without KD")
                out.append(line + ".")
            if role == "online" and ("kd", b) in by:
                out.append(f"{t}: KD-{display_backbone(b)} from the label store "
                           f"{_versus(found.get((t, ('kd', b), key)), by[('kd', b)], v, 'the same student distilled online')}.")
        if ("mean", "") in by and base is not None:
            out.append(f"{t}: predicting the training mean gives {by[('mean', '')]:.2f}; the base network {by[base]:.2f}.")
    return out


def _versus(diff: Difference | None, a: float, b: float, other: str) -> str:
    """"beats its teacher (5.27 vs 5.61; Δ −0.34, 95 % CI [−0.45, −0.22], n = 1000)"."""
    if diff is None:
        return f"has {a:.2f} against {b:.2f} for {other} (no per-face errors: no interval, no verdict)"
    return f"{verdict_phrase(diff)} {other} ({a:.2f} vs {b:.2f}; {interval_text(diff)})"


def differences_table(comparisons: list[Comparison]) -> str:
    """One line per comparison: the mean-MAE difference and its paired 95 % interval."""
    labels = {"base": "Base", "ensemble": "Ensemble", "kd": "KD", "online": "KD-online", "nokd": "Student without KD"}

    def name(k: tuple[str, str]) -> str:
        return f"{labels[k[0]]}-{display_backbone(k[1])}" if k[0] != "nokd" else f"{labels['nokd']} ({display_backbone(k[1])})"

    lines = ["| Test set | Comparison | Δ mean MAE | 95 % CI (paired bootstrap) | n | Verdict |",
             "|:---|:---|---:|:---:|---:|:---|"]
    for c in comparisons:
        verdict = {"lower": "lower (beats)", "higher": "higher (worse)", "none": "no measurable difference"}
        lines.append(f"| {c.test_set} | {name(c.a)} − {name(c.b)} | {c.diff.delta:+.2f} | "
                     f"[{c.diff.low:+.2f}, {c.diff.high:+.2f}] | {c.diff.n} | {verdict[c.diff.verdict]} |")
    return "\n".join(lines) + "\n"


def test_sets(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for t in r.results:
            if t not in names:
                names.append(t)
    return names


def _fmt(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}"


def markdown_table(rows: list[Row]) -> str:
    """Paper Table 5 layout: one row per model, MAE pitch/yaw/roll/mean per test set.

    The best (lowest) mean MAE of each test set is in bold.
    """
    sets = test_sets(rows)
    best = {
        t: min((r.results[t].mean for r in rows if t in r.results and r.role != "mean"), default=None)
        for t in sets
    }
    header = ["Method"] + [f"{t} {c}" for t in sets for c in ("pitch", "yaw", "roll", "MAE")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in rows:
        cells = [r.label]
        for t in sets:
            res = r.results.get(t)
            if res is None:
                cells += ["–"] * 4
                continue
            mean = _fmt(res.mean)
            if best[t] is not None and res.mean == best[t] and len(rows) > 1:
                mean = f"**{mean}**"
            cells += [_fmt(res.pitch), _fmt(res.yaw), _fmt(res.roll), mean]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"




GRID_ERRORS = "ensemble_grid.parquet"  # the ensemble grid's per-face errors in an errors folder


def row_errors(rows: list[Row], errors_dir: str | os.PathLike[str], grid_ps: tuple[int, int] | None) -> Errors:
    """Per-face errors of every row: ``<errors_dir>/<role>-<backbone>.parquet`` (``hpekd evaluate
    --errors``), and for the Ensemble row the grid's errors at the labels' ``grid_ps`` = (p, s)."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    root = Path(errors_dir)
    for r in rows:
        if r.role in ("base", *STUDENT_ROLES):
            out[(r.role, r.backbone)] = read_errors(root / f"{r.role}-{r.backbone}.parquet")
        elif r.role == "ensemble" and grid_ps is not None:
            grid = read_errors(root / GRID_ERRORS)
            out[(r.role, r.backbone)] = grid[(grid["p"] == grid_ps[0]) & (grid["s"] == grid_ps[1])]
    return out


def write_report(metrics_dir: str | os.PathLike[str], out: str | os.PathLike[str],  # 8: one per input/output
                 plot: str | os.PathLike[str] | None = None, extra: list[Row] | None = None,
                 only: list[str] | None = None, errors_dir: str | os.PathLike[str] | None = None,
                 grid_ps: tuple[int, int] | None = None, summary: str | os.PathLike[str] | None = None) -> list[Row]:
    """Collect the evaluation metrics (:func:`collect`) and write the Markdown table (and the PNG
    chart). With ``errors_dir`` (per-face errors, :func:`row_errors`), the paired intervals of
    :mod:`pipeline.evaluation.comparisons`, also written as JSON to ``summary`` (a DVC metric)."""
    rows = collect(metrics_dir, extra, only)
    errors = row_errors(rows, errors_dir, grid_ps) if errors_dir else None
    comparisons = compare(errors, test_sets(rows)) if errors else []
    diffs = ("\nDifferences in mean MAE (degrees; negative = the first is better), 95 % paired bootstrap "
             "interval over the test faces (2,000 resamples). A difference whose interval contains 0 is not "
             "measurable on this many faces.\n\n" + differences_table(comparisons)) if comparisons else ""
    text = (
        "# Table 5: MAE (degrees) per test set\n\n"
        + markdown_table(rows)
        + "\nBase = stage-1 network; Ensemble = its convolutional ensemble (eq. 6); "
        "KD = stage-2 student trained on the ensemble's soft labels (eq. 7); without KD = the same student "
        "recipe with the distillation term off (kd_weight 0); the training mean = predicting the mean training "
        "pose for every face. Lower is better; best mean in bold.\n"
        + diffs + "\n"
        + "".join(f"- {f}\n" for f in findings(rows, comparisons if errors else None))
        + "\nSources: "
        + ", ".join(f"`{src}`" for src in dict.fromkeys(r.source for r in rows)) + "\n"  # each file once
    )
    with atomic_path(out, ".md") as tmp:
        tmp.write_text(text)
    if summary is not None:
        write_json(summary, {"differences": to_metrics(comparisons)})
    if plot is not None:
        bar_chart(rows, test_sets(rows), plot)
    log.info("report: %d rows, test sets %s -> %s", len(rows), test_sets(rows), out)
    return rows
