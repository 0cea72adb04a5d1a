"""The KD-effect sweep (benchmarks/kd_effect.py) cannot rot: its smoke mode runs here. Its own
file, so that a parallel test run can give this long test a worker of its own."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.scripts import run_script as _run


def test_kd_effect_smoke(tmp_path: Path) -> None:
    """The KD-effect sweep end to end on tiny data through run_pipeline: one noisy setting, every
    arm, two seeds, contrasts with seed-and-face intervals, the exact-pose readout, the spread file."""
    out = _run(["benchmarks/kd_effect.py", str(tmp_path / "kd"), "--smoke"], timeout=900)
    assert "| setting | teacher |" in out
    rep = json.loads((tmp_path / "kd" / "kd_effect.json").read_text())
    assert [s["setting"] for s in rep["settings"]] == ["s2"]
    s = rep["settings"][0]
    assert set(s["arms"]) == {"a", "b", "c", "d", "a_long", "b_long"}
    assert all(len(a["mae_per_seed"]) == 2 and len(a["train_exact"]) == 2 for a in s["arms"].values())
    assert {"b - a", "d - a", "b - d", "b - c", "b - teacher", "b_long - a_long"} <= set(s["contrasts"])
    assert all(c["ci_low"] <= c["delta"] <= c["ci_high"] for c in s["contrasts"].values())
    assert s["labels_exact"]["mae_mean"] > 0 and "slope_yaw" in s["store_exact"]  # sigma 2: noisy labels
    assert (tmp_path / "kd" / "settings" / "s2.json").is_file() and (tmp_path / "kd" / "kd_effect.png").is_file()
    spread = json.loads((tmp_path / "kd" / "spread.json").read_text())
    assert set(spread) == {"source", "student_sd", "delta_sd"} and spread["student_sd"] is not None


def test_report_covers_every_finished_setting_of_the_folder(tmp_path: Path) -> None:
    """A sweep run in pieces (`--settings s8`, later `--settings s4`) ends with one table: the
    report loads every finished setting of OUT, not only this call's (no pipeline runs here: both
    settings are finished, taken from the committed sweep)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import kd_effect

    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kd_effect"
                            / "kd_effect.json").read_text())
    (tmp_path / "settings").mkdir()
    for s in committed["settings"]:
        if s["setting"] in ("s0", "s8"):
            (tmp_path / "settings" / f"{s['setting']}.json").write_text(json.dumps(s))
    assert kd_effect.main([str(tmp_path), "--settings", "s8"]) == 0
    rep = json.loads((tmp_path / "kd_effect.json").read_text())
    assert [s["setting"] for s in rep["settings"]] == ["s0", "s8"]
    assert "| s0 |" in (tmp_path / "kd_effect.md").read_text()


def test_an_outlier_setting_is_plotted_beside_its_sigma_not_on_the_curve(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """s2 and s2o10 share σ = 2: the plot draws the noise-only curve and the outlier setting as its
    own marker (it once joined them into one zig-zag line, and sorting two settings of one σ
    must not compare their rows)."""
    import sys

    import matplotlib.axes

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import kd_effect

    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kd_effect"
                            / "kd_effect.json").read_text())
    rep = {"settings": [s for s in committed["settings"] if s["setting"] in ("s0", "s2", "s2o10")]}
    assert len(rep["settings"]) == 3
    drawn: list[tuple[list[float], str]] = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, *args, **kwargs):  # type: ignore[no-untyped-def]
        drawn.append((list(x), kwargs["label"]))
        return real(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    kd_effect.plot(rep, tmp_path / "p.png")
    assert (tmp_path / "p.png").is_file()
    assert ([0.0, 2.0], "b - a") in drawn and ([2.25], "b - a, with outliers") in drawn
