"""The Table-5 report: MAE of every model that was run, per test set, as Markdown + a bar chart.

Naming convention of the evaluation metrics it reads (one JSON file per evaluated model):

    <metrics-dir>/**/<role>-<backbone>.json      e.g. metrics/eval/base-resnet50.json
                                                       metrics/eval/ensemble-resnet50.json
                                                       metrics/eval/kd-resnet18.json

``role`` is ``base`` (the stage-1 network, row ``Base-<backbone>``), ``ensemble`` (the
convolutional ensemble of the stage-1 network at the configured p, s, row
``Ensemble-<backbone>``) or ``kd`` (a stage-2 student, row ``KD-<backbone>``); ``backbone`` is
a torchvision ResNet name. Other JSON files under the directory (training curves, DVC
metrics of other stages) are ignored. The file body is the output of ``hpekd evaluate``: one
entry per test set with the MAE per angle (degrees) and their mean, in one of the shapes
accepted by :func:`parse_eval` (``{"<test set>": {"pitch", "yaw", "roll", "mean", "n"}}``,
optionally under a ``"test_sets"`` key, with ``mae_``-prefixed or nested ``"mae"`` keys). ``hpekd evaluate`` writes
``{"kind", "backbone", "split", "datasets": {"<test set>": {"mae_pitch", "mae_yaw", "mae_roll",
"mae_mean", "n", "dropped"}}, "all": {...}}``; when ``kind``/``backbone`` are present they must
agree with the file name (``kd`` ↔ a ``student`` checkpoint, ``base``/``ensemble`` ↔
``stage1``).

The Ensemble row can also come from the output of ``hpekd ensemble-grid`` (its JSON
``{"rows": [{"dataset", "p", "s", "mae_pitch", "mae_yaw", "mae_roll", "mae_mean", "n"}, …]}``): the
rows at the (p, s) that made the teacher labels (params ``teacher_labels.p``/``.s``) become
``Ensemble-<train_teacher.backbone>`` (:func:`ensemble_row_from_grid`).

Rows are ordered Base, Ensemble, KD and by backbone depth inside each group, like the
paper's Table 5; a model that was not evaluated on a test set shows "–" there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.angles import ANGLES
from pipeline.core.io import atomic_path
from pipeline.evaluation.figures import bar_chart

log = logging.getLogger(__name__)

ROLES = {"mean": "Predict the training mean", "base": "Base", "ensemble": "Ensemble", "kd": "KD",
         "nokd": "No-KD"}
FILE_RE = re.compile(r"^(base|ensemble|kd|nokd)-(resnet\d+)\.json$")


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
    role: str  # base | ensemble | kd
    backbone: str
    results: dict[str, Result]  # test set -> MAE
    source: str  # the JSON file it came from

    @property
    def label(self) -> str:
        if self.role == "mean":
            return ROLES["mean"]
        if self.role == "nokd":
            return f"Student-{display_backbone(self.backbone)} without KD"
        return f"{ROLES[self.role]}-{display_backbone(self.backbone)}"


def display_backbone(name: str) -> str:
    m = re.fullmatch(r"resnet(\d+)", name)
    return f"ResNet{m.group(1)}" if m else name


def _depth(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def _number(value: Any, where: str) -> float:
    if isinstance(value, dict):
        for key in ("mae", "value", "mean"):
            if key in value:
                return _number(value[key], where)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    return out


def _result(entry: dict[str, Any], where: str) -> Result | None:
    """One test set's block → Result, or None when it does not look like one."""
    if not isinstance(entry, dict):
        return None
    block = entry.get("mae") if isinstance(entry.get("mae"), dict) else entry
    vals: dict[str, float] = {}
    for a in ANGLES:
        for key in (a, f"mae_{a}", f"{a}_mae"):
            if key in block:
                vals[a] = _number(block[key], f"{where}.{key}")
                break
        else:
            return None
    mean = None
    for key in ("mean", "mae_mean", "mae", "avg", "mae_avg"):
        if key in block and not isinstance(block[key], dict):
            mean = _number(block[key], f"{where}.{key}")
            break
    if mean is None:
        mean = sum(vals.values()) / 3
    n = entry.get("n", entry.get("count", block.get("n")))
    return Result(vals["pitch"], vals["yaw"], vals["roll"], mean, int(n) if n is not None else None)


def parse_eval(data: Any, where: str = "metrics") -> dict[str, Result]:
    """Evaluation JSON → {test set: Result}. Raises ValueError naming the file if empty."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with one entry per test set")
    for key in ("test_sets", "results", "datasets"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    out: dict[str, Result] = {}
    for name, entry in data.items():
        res = _result(entry, f"{where}:{name}")
        if res is not None:
            out[str(name)] = res
    if not out:
        raise ValueError(
            f"{where}: no test-set MAE found (expected {{'<test set>': {{'pitch':…, 'yaw':…, "
            "'roll':…, 'mean':…}}}} as written by `hpekd evaluate`)"
        )
    return out


def ensemble_row_from_grid(path: str | os.PathLike[str], p: int, s: int, backbone: str) -> Row:
    """The Ensemble row from an ``hpekd ensemble-grid`` JSON at the labels' (p, s)."""
    src = Path(path)
    if not src.is_file():
        raise ValueError(f"ensemble grid {str(src)!r} not found: run the ensemble_grid stage or drop --ensemble-grid")
    try:
        data = json.loads(src.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(src)!r} is not valid JSON ({exc})") from exc
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{str(src)!r} has no 'rows' list (expected the output of `hpekd ensemble-grid`)")
    results = {}
    for r in rows:
        if int(r.get("p", -1)) == int(p) and int(r.get("s", -1)) == int(s):
            results[str(r["dataset"])] = Result(
                float(r["mae_pitch"]), float(r["mae_yaw"]), float(r["mae_roll"]),
                float(r.get("mae_mean", (r["mae_pitch"] + r["mae_yaw"] + r["mae_roll"]) / 3)),
                int(r["n"]) if "n" in r else None,
            )
    if not results:
        have = sorted({(int(r["p"]), int(r["s"])) for r in rows if "p" in r and "s" in r})
        raise ValueError(
            f"{str(src)!r} has no ensemble with p={p}, s={s} (the teacher labels' setting); it has {have[:12]}: "
            "make ensemble_grid.p_max >= p and include s in ensemble_grid.s"
        )
    return Row("ensemble", backbone, results, str(src))


def _check_identity(data: Any, key: tuple[str, str], path: Path) -> None:
    """``hpekd evaluate`` records the checkpoint's kind and backbone: they must fit the name."""
    if not isinstance(data, dict):
        return
    kind, backbone = data.get("kind"), data.get("backbone")
    want_kind = "student" if key[0] in ("kd", "nokd") else "stage1"
    if kind is not None and kind != want_kind:
        raise ValueError(
            f"{str(path)!r} evaluates a {kind!r} checkpoint but its name says {key[0]!r} "
            f"(expected kind {want_kind!r}): rename it or fix the evaluate stage's --model"
        )
    if backbone is not None and backbone != key[1]:
        raise ValueError(
            f"{str(path)!r} evaluates a {backbone} but its name says {key[1]}: rename it or fix --model"
        )


def collect(metrics_dir: str | os.PathLike[str], extra: list[Row] | None = None) -> list[Row]:
    """Every ``<role>-<backbone>.json`` under ``metrics_dir`` (plus ``extra`` rows), in Table-5 order."""
    root = Path(metrics_dir)
    if not root.is_dir():
        raise ValueError(f"metrics directory {str(root)!r} not found: run the evaluate stages first")
    seen: dict[tuple[str, str], Path] = {}
    rows = []
    for path in sorted(root.rglob("*.json")):
        m = FILE_RE.match(path.name)
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if key in seen:
            raise ValueError(
                f"two evaluations of {ROLES[key[0]]}-{key[1]}: {str(seen[key])!r} and {str(path)!r}; "
                "keep one per role and backbone"
            )
        seen[key] = path
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(path)!r} is not valid JSON ({exc})") from exc
        _check_identity(data, key, path)
        rows.append(Row(key[0], key[1], parse_eval(data, str(path)), str(path)))
    for row in extra or []:
        key = (row.role, row.backbone)
        if key in seen:
            raise ValueError(
                f"two evaluations of {ROLES[key[0]]}-{key[1]}: {str(seen[key])!r} and {row.source!r}; "
                "keep one per role and backbone"
            )
        seen[key] = Path(row.source)
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
        if row.role not in ("base", "kd", "nokd"):
            continue
        data = json.loads(Path(row.source).read_text())
        results = {}
        for name, entry in (data.get("datasets") or {}).items():
            if isinstance(entry, dict) and all(f"baseline_mae_{a}" in entry for a in ANGLES):
                vals = [float(entry[f"baseline_mae_{a}"]) for a in ANGLES]
                results[str(name)] = Result(*vals, sum(vals) / 3, entry.get("n"))
        if results:
            return Row("mean", "", results, row.source)
    return None


def findings(rows: list[Row]) -> list[str]:
    """Plain sentences comparing the rows on each test set (what the run shows, good or not)."""
    out = []
    for t in test_sets(rows):
        by = {(r.role, r.backbone): r.results[t].mean for r in rows if t in r.results}
        base = {b: v for (role, b), v in by.items() if role == "base"}
        for (role, b), v in sorted(by.items()):
            ref = base.get(b) if role == "ensemble" else next(iter(base.values()), None)
            if role == "ensemble" and ref is not None:
                verdict = "helps" if v < ref - 0.005 else "does not help"
                out.append(f"{t}: the ensemble {verdict} here ({v:.2f} vs {ref:.2f} for the single network).")
            if role == "kd" and ref is not None:
                verdict = "beats" if v < ref else "does not beat"
                line = f"{t}: KD-{display_backbone(b)} {verdict} its teacher ({v:.2f} vs {ref:.2f})"
                nokd = by.get(("nokd", b))
                if nokd is not None:
                    gain = "better" if v < nokd else "not better"
                    line += f" and is {gain} than the same student trained without KD ({nokd:.2f})"
                out.append(line + ".")
        if ("mean", "") in by and base:
            ref = next(iter(base.values()))
            out.append(f"{t}: predicting the training mean gives {by[('mean', '')]:.2f}; the base network {ref:.2f}.")
    return out


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




def write_report(metrics_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                 plot: str | os.PathLike[str] | None = None, extra: list[Row] | None = None) -> list[Row]:
    """Collect the evaluation metrics and write the Markdown table (and the PNG chart)."""
    rows = collect(metrics_dir, extra)
    text = (
        "# Table 5: MAE (degrees) per test set\n\n"
        + markdown_table(rows)
        + "\nBase = stage-1 network; Ensemble = its convolutional ensemble (eq. 6); "
        "KD = stage-2 student trained on the ensemble's soft labels (eq. 7); without KD = the same student "
        "recipe with the distillation term off (kd_weight 0); the training mean = predicting the mean training "
        "pose for every face. Lower is better; best mean in bold.\n\n"
        + "".join(f"- {f}\n" for f in findings(rows))
        + "\nSources: "
        + ", ".join(f"`{src}`" for src in dict.fromkeys(r.source for r in rows)) + "\n"  # each file once
    )
    with atomic_path(out, ".md") as tmp:
        tmp.write_text(text)
    if plot is not None:
        bar_chart(rows, test_sets(rows), plot)
    log.info("report: %d rows, test sets %s -> %s", len(rows), test_sets(rows), out)
    return rows
