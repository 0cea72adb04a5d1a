"""The benchmarks cannot rot: the GPU suite's smoke mode and the scale rehearsal run here, and
the shared A/B alternation is checked. Ratios are printed by the scripts, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import Comparison, alternate  # noqa: E402


def _run(args: list[str], timeout: int) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_alternate_interleaves_and_takes_medians() -> None:
    calls: list[str] = []
    vals = {"a": iter([99.0, 1.0, 3.0, 2.0]), "b": iter([99.0, 10.0, 30.0, 20.0])}

    def make(k: str):
        def fn() -> float:
            calls.append(k)
            return next(vals[k])
        return fn

    comp = alternate("x", "it/s", {"a": make("a"), "b": make("b")}, rounds=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert comp.samples == {"a": [1.0, 3.0, 2.0], "b": [10.0, 30.0, 20.0]}
    assert comp.median("a") == 2.0 and comp.ratio("a", "b") == pytest.approx(0.1)
    assert comp.to_dict()["medians"] == {"a": 2.0, "b": 20.0}
    assert isinstance(comp, Comparison) and len(comp.lines()) == 2
    with pytest.raises(ValueError, match="rounds"):
        alternate("x", "it/s", {"a": make("a")}, rounds=0)


def test_device_suite_smoke(tmp_path: Path) -> None:
    out = _run(["benchmarks/device_suite.py", str(tmp_path / "out"), "--smoke", "--budget", "600"], timeout=900)
    assert out.strip().splitlines()[-1].startswith("ratio ")
    res = json.loads((tmp_path / "out" / "device_suite.json").read_text())
    assert res["smoke"] is True
    parts = res["parts"]
    assert set(parts) == {"teacher job vs bare (eager)", "stage-1 training: loader vs in-memory",
                          "stage-2 training: loader vs in-memory", "pytest -m gpu"}
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part.get("traceback", part["status"]))
    for name in ("teacher job vs bare (eager)", "stage-1 training: loader vs in-memory"):
        comp = parts[name]["comparison"]
        assert all(len(v) == res["preset"]["rounds"] for v in comp["samples"].values())
        assert parts[name]["ratio"] > 0
    assert parts["pytest -m gpu"]["passed"]
    md = (tmp_path / "out" / "device_suite.md").read_text()
    assert "| teacher job vs bare (eager) |" in md and "| pytest -m gpu |" in md


@pytest.mark.slow
def test_scale_rehearsal_10k(tmp_path: Path) -> None:
    """The plumbing at 10k rows (stub network): every stage runs, the store stays in the tens of files."""
    out = _run(["benchmarks/scale.py", "--n", "10000", "--json", str(tmp_path / "scale.json"),
                "--work", str(tmp_path / "work")], timeout=900)
    res = json.loads((tmp_path / "scale.json").read_text())["results"]["10000"]
    assert set(res) == {"index", "relabel", "teacher-labels", "load", "dvc"}
    assert res["teacher-labels"]["crops"] == 10000 * 8 * 9
    assert 1 <= res["teacher-labels"]["store_files"] < 100
    assert res["load"]["decoded_mb"] > 0
    assert "dvc" in out


def test_unlabelled_gain_smoke(tmp_path: Path) -> None:
    out = _run(["benchmarks/unlabelled_gain.py", str(tmp_path / "ug"), "--smoke"], timeout=900)
    assert out.strip().splitlines()[-1].startswith("ratio (c)/(a) mean MAE: ")
    res = json.loads((tmp_path / "ug" / "unlabelled_gain.json").read_text())
    n = res["counts"]
    assert n["train_labelled"] == round(0.25 * (n["train_labelled"] + n["train_unlabelled"]))
    rows = {name: r["rows"] for name, r in res["results"].items() if "rows" in r}
    assert rows["a: labelled only, no KD"] == {"labelled": n["train_labelled"], "unlabelled": 0,
                                               "unlabelled_left_out": n["train_unlabelled"]}
    assert rows["b: KD, labelled only"]["unlabelled"] == 0
    assert rows["c: KD, labelled + unlabelled"] == {"labelled": n["train_labelled"], "unlabelled": n["train_unlabelled"],
                                                    "unlabelled_left_out": 0}
