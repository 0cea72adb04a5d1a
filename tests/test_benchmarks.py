"""The benchmarks cannot rot: the GPU suite's smoke mode and the scale rehearsal run here, and
the shared A/B alternation is checked. Ratios are printed by the scripts, never asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import Comparison, alternate  # noqa: E402

from tests.helpers.scripts import run_script as _run  # noqa: E402


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


def test_cache_tradeoff_smoke(tmp_path: Path) -> None:
    """The cache trade-off benchmark end to end on tiny data: online, V = 1 and 2, two compact
    encodings; every row compared with online on the same faces; the last line the ratios."""
    out = _run(["benchmarks/cache_tradeoff.py", str(tmp_path / "ct"), "--smoke"], timeout=900)
    last = out.strip().splitlines()[-1]
    assert last.startswith("best offline (") and "MAE ratio" in last and "teacher-compute ratio" in last
    res = json.loads((tmp_path / "ct" / "cache_tradeoff.json").read_text())
    names = [r["name"] for r in res["rows"]]
    assert names[0] == "online" and {"offline V=1 float16", "offline V=2 float16"} <= set(names)
    assert {r["encoding"] for r in res["rows"][1:]} == {"float16", "uint8", "top8"}
    rows = {r["name"]: r for r in res["rows"]}
    n = res["n_images"]
    assert rows["online"]["teacher_passes"] == n * res["A"] * res["epochs"]
    assert rows["offline V=2 float16"]["teacher_passes"] == n * 2 * res["A"]
    best_v = res["best_views"]
    assert rows[f"offline V={best_v} top8"]["store_bytes"] < rows[f"offline V={best_v} float16"]["store_bytes"]
    assert all(r["vs_online"]["n"] == rows["online"]["vs_online"]["n"] > 0 for r in res["rows"])


def test_domain_gain_smoke(tmp_path: Path) -> None:
    """The domain-shift benchmark on tiny data: B's training images enter (c) as unlabelled
    `images` rows and (d) as labelled ones; every student is compared with (a) on both domains."""
    out = _run(["benchmarks/domain_gain.py", str(tmp_path / "dg"), "--smoke"], timeout=900)
    assert out.strip().splitlines()[-1].startswith("gap closed ((a)-(c))/((a)-(d)) on B: ")
    res = json.loads((tmp_path / "dg" / "domain_gain.json").read_text())
    rows = {name: r["rows"] for name, r in res["results"].items() if "rows" in r}
    a, c, d = rows["a: A labels, no KD"], rows["c: KD, A + unlabelled B"], rows["d: KD, A + labelled B (ceiling)"]
    assert a["unlabelled"] == 0 and a["unlabelled_left_out"] == c["unlabelled"] > 0
    assert d["unlabelled"] == 0 and d["labelled"] == c["labelled"] + c["unlabelled"]
    assert all(set(r) >= {"A", "B"} for r in res["results"].values())
    u = res["unlabelled_beyond_kd"]  # (c) against (b): what the unlabelled images add beyond KD on A
    assert u["c_minus_b"]["n"] == u["gap_after_b"]["n"] == res["gap_closed"]["n"] > 0
    assert out.strip().splitlines()[-2].startswith("what the unlabelled B images add to KD on A, on B: (c) - (b) ")
    # round 2: student (b) teaches; (g) takes the unlabelled B rows, (h) does not
    g, h = rows["g: round 2, (b) teaches, A + unlabelled B"], rows["h: round 2, (b) teaches, A only"]
    assert g == c and h == rows["b: KD, A only"] and rows["i: A + labelled B, no KD"] == d
    assert u["round2_g_minus_h"]["n"] == u["gap_closed_vs_i"]["n"] == u["c_minus_b"]["n"]
    assert any(line.startswith("round 2, (b) as the teacher, on B: (g) - (h) ") for line in out.splitlines())
    assert (tmp_path / "dg" / "domains.png").is_file()


def test_functions_stay_short() -> None:
    """Benchmarks hold their arms and their table; the pipeline does the running (issue 30): no
    function in benchmarks/ or pipeline/ is longer than 60 lines, docstring included."""
    import ast

    long = []
    for path in sorted([*(REPO / "benchmarks").glob("*.py"), *(REPO / "pipeline").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({lines} lines)")
    assert not long, long
