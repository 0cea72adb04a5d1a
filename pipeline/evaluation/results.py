"""What the Table-5 report reads: evaluation files found and validated, the ensemble grid's rows,
per-face errors and the benchmark's seed-to-seed spread.

Naming convention of the evaluation metrics (one JSON file per evaluated model)::

    <metrics-dir>/**/<prefix><backbone>.json      e.g. metrics/synthetic/eval/base-resnet18.json
                                                        metrics/synthetic/eval/nokd-resnet18.json

with the prefixes and roles of :data:`pipeline.evaluation.roles.ROLES` (``base-``, ``ensemble-``,
``kd-``, ``online-``, ``nokd-``, ``soft-``); ``backbone`` is a torchvision ResNet name. Other JSON
files under the folder (training curves, other stages' metrics) are ignored. The file body is
exactly what ``hpekd evaluate`` writes (key names in :mod:`pipeline.evaluation.schema`), and its
recorded ``kind`` and ``backbone`` must agree with the file name. A missing or unknown key is
refused with one line naming the file and the key: rerun ``hpekd evaluate`` to rewrite the file.

The Ensemble row can also come from ``hpekd ensemble-grid``'s JSON: its rows at the (p, s) that
made the teacher labels (:func:`ensemble_row_from_grid`). Rows are ordered as the role table,
then by backbone depth, like the paper's Table 5.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.angles import ANGLES
from pipeline.evaluation import schema as keys
from pipeline.evaluation.comparisons import Errors
from pipeline.evaluation.errors import read_errors
from pipeline.evaluation.roles import BACKBONE_RE, FILE_ROLES, ROLES, STUDENT_ROLES, file_name, role_of_file

RERUN_EVALUATE = "rerun `hpekd evaluate` to rewrite it"
RERUN_GRID = "rerun `hpekd ensemble-grid` (the ensemble_grid stage) to rewrite it"
GRID_ERRORS = "ensemble_grid.parquet"  # the ensemble grid's per-face errors in an errors folder


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
    role: str  # a key of roles.ROLES
    backbone: str
    results: dict[str, Result]  # test set -> MAE
    source: str  # the JSON file it came from
    # test set -> MAE of predicting the training mean, as `hpekd evaluate` records it
    baselines: dict[str, Result] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ROLES[self.role].row_label(self.backbone)


@dataclass(frozen=True)
class Evaluation:
    """One parsed ``hpekd evaluate`` file."""

    kind: str  # checkpoint kind: stage1 | student
    backbone: str
    results: dict[str, Result]  # test set -> MAE of the model
    baselines: dict[str, Result]  # test set -> MAE of predicting the training mean (when recorded)


@dataclass(frozen=True)
class SeedSpread:
    """Seed-to-seed standard deviations measured by ``benchmarks/kd_effect.py``: of one student's
    mean MAE, and of a paired difference between two students (the same seeds in both arms)."""

    source: str
    student_sd: float
    delta_sd: float

    def could_flip(self, delta: float) -> bool:
        """A difference smaller than about two seed SDs can change sign with another training seed."""
        return abs(delta) < 2 * self.delta_sd


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc})") from exc


def check_keys(obj: Any, required: tuple[str, ...], where: str, fix: str, optional: tuple[str, ...] = ()) -> None:
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
    check_keys(block, keys.BLOCK_KEYS, where, RERUN_EVALUATE, optional=keys.BASELINE_KEYS)
    n = _count(block, keys.N, where, RERUN_EVALUATE)
    mae = [_number(block, keys.MAE[a], where, RERUN_EVALUATE) for a in ANGLES]
    result = Result(*mae, _number(block, keys.MAE_MEAN, where, RERUN_EVALUATE), n)
    if keys.BASELINE_MEAN not in block:
        return result, None
    base = [_number(block, keys.BASELINE[a], where, RERUN_EVALUATE) for a in ANGLES]
    return result, Result(*base, sum(base) / 3, n)


def parse_eval(data: Any, where: str = "metrics") -> Evaluation:
    """The JSON of ``hpekd evaluate`` → :class:`Evaluation`; anything else is a ValueError naming ``where``."""
    check_keys(data, keys.EVAL_KEYS, where, RERUN_EVALUATE)
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
        check_keys(r, keys.GRID_ROW_KEYS, at, RERUN_GRID)
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
    check_keys(data, keys.GRID_KEYS, where, RERUN_GRID)
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
    want_kind = ROLES[key[0]].kind
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
    return ValueError(f"two evaluations of {ROLES[key[0]].row_label(key[1])}: {first!r} and {second!r}; "
                      "keep one per role and backbone")


def _depth(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def collect(metrics_dir: str | os.PathLike[str], extra: list[Row] | None = None,
            only: list[str] | None = None) -> list[Row]:
    """Every evaluation file under ``metrics_dir`` (plus ``extra`` rows), in Table-5 order.
    ``only``: read just these files (e.g. those the pipeline declares for the current params),
    each of which must exist; other files in the folder are ignored."""
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
        key = role_of_file(path.name)
        if key is None:
            continue
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
            f"with role in {sorted(FILE_ROLES)} (e.g. base-resnet50.json, kd-resnet18.json)"
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


def test_sets(rows: list[Row]) -> list[str]:
    """The test sets of the rows, in the order they first appear."""
    names: list[str] = []
    for r in rows:
        for t in r.results:
            if t not in names:
                names.append(t)
    return names


def row_errors(rows: list[Row], errors_dir: str | os.PathLike[str], grid_ps: tuple[int, int] | None) -> Errors:
    """Per-face errors of every row: ``<errors_dir>/<prefix><backbone>.parquet`` (``hpekd evaluate
    --errors``), and for the Ensemble row the grid's errors at the labels' ``grid_ps`` = (p, s)."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    root = Path(errors_dir)
    for r in rows:
        if r.role in ("base", *STUDENT_ROLES):
            out[(r.role, r.backbone)] = read_errors(root / file_name(r.role, r.backbone, ".parquet"))
        elif r.role == "ensemble" and grid_ps is not None:
            grid = read_errors(root / GRID_ERRORS)
            out[(r.role, r.backbone)] = grid[(grid["p"] == grid_ps[0]) & (grid["s"] == grid_ps[1])]
    return out


SPREAD_KEYS = ("source", "student_sd", "delta_sd")
RERUN_SPREAD = "write it as {\"source\": str, \"student_sd\": number, \"delta_sd\": number} (benchmarks/kd_effect.py)"


def load_seed_spread(path: str | os.PathLike[str]) -> SeedSpread:
    """The ``--seed-spread`` JSON ``{"source", "student_sd", "delta_sd"}``; anything else is refused
    in one line naming the file and the key."""
    src = Path(path)
    where = repr(str(src))
    if not src.is_file():
        raise ValueError(f"seed spread {where} not found: run benchmarks/kd_effect.py or drop --seed-spread")
    data = _load_json(src)
    check_keys(data, SPREAD_KEYS, where, RERUN_SPREAD)
    if not isinstance(data["source"], str) or not data["source"].strip():
        raise ValueError(f"{where}: 'source' is {data['source']!r}, expected a non-empty name of the measurement")
    sds = {}
    for key in SPREAD_KEYS[1:]:
        value = _number(data, key, where, RERUN_SPREAD)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {key!r} is {value!r}, expected a standard deviation > 0 (degrees)")
        sds[key] = value
    return SeedSpread(data["source"], sds["student_sd"], sds["delta_sd"])
