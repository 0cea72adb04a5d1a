"""The Table-5 report: file naming convention, parsing, ordering, Markdown + PNG, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.core.config import default_config
from pipeline.evaluation import schema as keys
from pipeline.evaluation.report import markdown_table, write_report
from pipeline.evaluation.results import collect, parse_eval
from stages.report import cli


def _eval(pitch: float, yaw: float, roll: float, n: int = 10, base: tuple | None = None) -> dict:
    """One test set's block, as `hpekd evaluate` writes it (with the training-mean MAE when ``base``)."""
    mae = dict(zip(("pitch", "yaw", "roll"), (pitch, yaw, roll)))
    block = {**{keys.MAE[a]: v for a, v in mae.items()}, keys.MAE_MEAN: (pitch + yaw + roll) / 3,
             **{k: 0.9 for k in keys.SLOPE.values()}, **{k: 0.95 for k in keys.PEARSON.values()},
             keys.N: n, keys.DROPPED: 0}
    if base:
        block.update({keys.BASELINE[a]: v for a, v in zip(("pitch", "yaw", "roll"), base)})
        block[keys.BASELINE_MEAN] = sum(base) / 3
    return block


def _file(kind: str, backbone: str, sets: dict) -> dict:
    """A whole `hpekd evaluate` JSON: identity, one block per test set and the overall block."""
    return {keys.KIND: kind, keys.BACKBONE: backbone, keys.SPLIT: "test", keys.DATASETS: sets,
            keys.ALL: next(iter(sets.values()))}


def _write(d: Path, name: str, data: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(json.dumps(data))


@pytest.fixture()
def metrics(tmp_path: Path) -> Path:
    d = tmp_path / "metrics"
    _write(d / "eval", "kd-resnet50.json",
           _file("student", "resnet50", {"AFLW2000": _eval(4.0, 3.0, 2.9), "BIWI": _eval(4.5, 3.6, 3.7)}))
    _write(d / "eval", "base-resnet50.json",
           _file("stage1", "resnet50", {"AFLW2000": _eval(5.0, 3.5, 3.0), "BIWI": _eval(5.0, 4.0, 3.5)}))
    _write(d / "eval", "kd-resnet18.json", _file("student", "resnet18", {"AFLW2000": _eval(5.2, 3.9, 3.4)}))
    _write(d / "eval", "ensemble-resnet50.json", _file("stage1", "resnet50", {"AFLW2000": _eval(4.9, 3.4, 3.0)}))
    _write(d, "train_student_resnet18.json", {"loss": 1.0})  # not an evaluation: ignored
    return d


def test_rows_in_table5_order(metrics: Path) -> None:
    rows = collect(metrics)
    assert [r.label for r in rows] == ["Base-ResNet50", "Ensemble-ResNet50", "KD-ResNet18", "KD-ResNet50"]


def test_markdown_table(metrics: Path) -> None:
    text = markdown_table(collect(metrics))
    lines = text.strip().splitlines()
    assert lines[0].split(" | ")[1:5] == ["AFLW2000 pitch", "AFLW2000 yaw", "AFLW2000 roll", "AFLW2000 MAE"]
    assert "BIWI MAE" in lines[0]
    kd18 = next(line for line in lines if line.startswith("| KD-ResNet18"))
    assert kd18.count("–") == 4  # not evaluated on BIWI
    base = next(line for line in lines if line.startswith("| Base-ResNet50"))
    assert "| 5.00 | 3.50 | 3.00 | 3.83 |" in base
    kd50 = next(line for line in lines if line.startswith("| KD-ResNet50"))
    assert "**3.30**" in kd50 and "**3.93**" in kd50  # best mean per test set in bold


def test_parse_eval_reads_exactly_the_evaluate_schema() -> None:
    ev = parse_eval(_file("stage1", "resnet18", {"t": {**_eval(1, 2, 6, n=5), keys.MAE_MEAN: 3}}), "x.json")
    a = ev.results["t"]
    assert (a.pitch, a.yaw, a.roll, a.mean, a.n) == (1, 2, 6, 3, 5) and ev.baselines == {}
    assert parse_eval(_file("stage1", "resnet18", {"t": _eval(1, 2, 3, base=(3, 6, 9))})).baselines["t"].mean == 6
    refused = {  # key shapes other readers once accepted, and near misses of the real one
        "unknown key 'model'": {**_file("stage1", "resnet18", {"t": _eval(1, 2, 3)}), "model": "m.pt"},
        "missing key 'kind'": {"t": _eval(1, 2, 3)},
        "missing key 'mae_pitch'": _file("stage1", "resnet18", {"t": {"pitch": 1, "yaw": 2, "roll": 3, "mean": 2}}),
        "missing key 'mae_mean'": _file("stage1", "resnet18", {"t": {k: v for k, v in _eval(1, 2, 3).items()
                                                                       if k != keys.MAE_MEAN}}),
        "unknown key 'mae_avg'": _file("stage1", "resnet18", {"t": {**_eval(1, 2, 3), "mae_avg": 2}}),
        "missing key 'baseline_mae_pitch'": _file("stage1", "resnet18", {"t": {**_eval(1, 2, 3),
                                                                               keys.BASELINE["yaw"]: 1}}),
        "'mae_yaw' is '2', expected a number": _file("stage1", "resnet18", {"t": {**_eval(1, 2, 3),
                                                                                  keys.MAE["yaw"]: "2"}}),
        "'datasets' holds no test set": {**_file("stage1", "resnet18", {"t": _eval(1, 2, 3)}), keys.DATASETS: {}},
    }
    for message, data in refused.items():
        with pytest.raises(ValueError, match=re.escape(message)) as err:
            parse_eval(data, "'x.json'")
        assert str(err.value).startswith("'x.json'") and "rerun `hpekd evaluate`" in str(err.value)
        assert "\n" not in str(err.value)


def test_cli_refuses_a_file_with_a_wrong_key_in_one_line(metrics: Path, tmp_path: Path) -> None:
    bad = metrics / "eval" / "kd-resnet18.json"
    data = json.loads(bad.read_text())
    data[keys.DATASETS]["AFLW2000"]["mae_avg"] = data[keys.DATASETS]["AFLW2000"].pop(keys.MAE_MEAN)
    bad.write_text(json.dumps(data))
    res = CliRunner().invoke(cli, ["--metrics-dir", str(metrics), "--out", str(tmp_path / "t.md"),
                                   "--plot", str(tmp_path / "t.png")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == [
        f"Error: {str(bad)!r} datasets['AFLW2000']: missing key 'mae_mean'; rerun `hpekd evaluate` to rewrite it"]
    assert not (tmp_path / "t.md").exists()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        collect(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(ValueError, match="base-resnet50.json"):
        collect(tmp_path / "m")
    _write(tmp_path / "m" / "a", "kd-resnet18.json", _file("student", "resnet18", {"t": _eval(1, 2, 3)}))
    _write(tmp_path / "m" / "b", "kd-resnet18.json", _file("student", "resnet18", {"t": _eval(1, 2, 3)}))
    with pytest.raises(ValueError, match="two evaluations of KD-ResNet18"):
        collect(tmp_path / "m")


def test_write_report_and_png(metrics: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "r" / "table5.md", tmp_path / "r" / "table5.png"
    rows = write_report(metrics, out, png)
    assert len(rows) == 4
    assert out.read_text().startswith("# Table 5")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli(metrics: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "table5.md", tmp_path / "table5.png"
    res = CliRunner().invoke(cli, ["--metrics-dir", str(metrics), "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "KD-ResNet18" in res.output and out.is_file() and png.is_file()
    res = CliRunner().invoke(cli, ["--metrics-dir", str(tmp_path / "nope"), "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 1 and "Error: metrics directory" in res.output


def _grid(path: Path) -> Path:
    """An `hpekd ensemble-grid` JSON, written by the stage's own writer."""
    from pipeline.evaluation.ensemble_grid import EnsembleGridConfig, write_grid

    rows = [
        {"dataset": "AFLW2000", "p": p, "s": s, "A": 1, "n": 10, "mae_pitch": 4.0 + p / 10, "mae_yaw": 3.0,
         "mae_roll": 3.0, "mae_mean": (10.0 + p / 10) / 3}
        for p, s in ((0, 1), (1, 1), (2, 1), (0, 2), (2, 2))
    ]
    write_grid(rows, default_config(EnsembleGridConfig, "ensemble_grid", p_max=2, s=(1, 2)), str(path), str(path.with_suffix(".csv")),
               str(path.with_suffix(".png")))
    return path


def test_ensemble_row_from_grid(metrics: Path, tmp_path: Path) -> None:
    from pipeline.evaluation.results import ensemble_row_from_grid

    row = ensemble_row_from_grid(_grid(tmp_path / "grid.json"), 2, 2, "resnet50")
    assert row.label == "Ensemble-ResNet50" and row.results["AFLW2000"].pitch == pytest.approx(4.2)
    with pytest.raises(ValueError, match="no ensemble with p=15, s=5"):
        ensemble_row_from_grid(tmp_path / "grid.json", 15, 5, "resnet50")
    with pytest.raises(ValueError, match="two evaluations of Ensemble-ResNet50"):
        collect(metrics, [row])  # metrics already holds ensemble-resnet50.json
    data = json.loads((tmp_path / "grid.json").read_text())
    data["rows"][3]["mae"] = data["rows"][3].pop("mae_mean")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(f"{str(bad)!r} rows[3]: missing key 'mae_mean'; rerun "
                                                   "`hpekd ensemble-grid`")):
        ensemble_row_from_grid(bad, 2, 2, "resnet50")
    bad.write_text(json.dumps({k: v for k, v in data.items() if k != "rows"}))
    with pytest.raises(ValueError, match="missing key 'rows'"):
        ensemble_row_from_grid(bad, 2, 2, "resnet50")


def test_cli_with_ensemble_grid(metrics: Path, tmp_path: Path) -> None:
    (metrics / "eval" / "ensemble-resnet50.json").unlink()
    out, png = tmp_path / "t.md", tmp_path / "t.png"
    args = ["--metrics-dir", str(metrics), "--out", str(out), "--plot", str(png)]
    grid = ["--ensemble-grid", str(_grid(tmp_path / "g.json"))]
    res = CliRunner().invoke(cli, [*args, *grid, "--p", "2", "--s", "2", "--backbone", "resnet50"])
    assert res.exit_code == 0, res.output
    line = next(x for x in out.read_text().splitlines() if x.startswith("| Ensemble-ResNet50"))
    assert line.startswith("| Ensemble-ResNet50 | 4.20 | 3.00 | 3.00 | 3.40 |")
    out.unlink()
    # the grid's (p, s) and the row's backbone come from the command line (dvc.yaml: teacher_labels, train_teacher)
    res = CliRunner().invoke(cli, [*args, *grid, "--p", "2"])
    assert res.exit_code == 2 and "Error: --ensemble-grid needs --s and --backbone" in res.output
    res = CliRunner().invoke(cli, [*args, "--backbone", "resnet50"])
    assert res.exit_code == 2 and "only apply with --ensemble-grid" in res.output
    res = CliRunner().invoke(cli, [*args, *grid, "--p", "2", "--s", "2", "--backbone", "ResNet-50"])
    assert res.exit_code == 1 and "Error: backbone 'ResNet-50' of the ensemble row is not a ResNet name" in res.output
    assert not out.exists()


def test_reads_hpekd_evaluate_output(tmp_path: Path) -> None:
    """The JSON of `hpekd evaluate` (pipeline.evaluation.evaluate.evaluate_checkpoint), with its identity check."""


    from pipeline.evaluation.evaluate import angle_stats, mae_table

    true = np.array([[0.0, 10.0, 0.0], [10.0, -20.0, 5.0], [-10.0, 30.0, -5.0]])
    pred = true + [[5.0, 4.0, 3.0], [-5.0, -4.0, 3.0], [5.0, 4.0, -3.0]]
    block = {**mae_table(pred, true), **angle_stats(pred, true, np.zeros(3)), keys.N: 3, keys.DROPPED: 0}
    data = {keys.KIND: "student", keys.BACKBONE: "resnet18", keys.SPLIT: "test",
            keys.DATASETS: {"synth_test": block, "biwi": {**block, keys.MAE_MEAN: 4.5}}, keys.ALL: block}
    _write(tmp_path / "m", "kd-resnet18.json", data)
    mean, row = collect(tmp_path / "m")  # the baselines make the predict-the-training-mean row
    assert mean.label == "Predict the training mean" and mean.results["biwi"].pitch == pytest.approx(20 / 3)
    assert sorted(row.results) == ["biwi", "synth_test"] and row.results["biwi"].mean == 4.5
    assert (row.results["synth_test"].pitch, row.results["synth_test"].mean) == (5.0, 4.0)
    _write(tmp_path / "m", "base-resnet18.json", data)
    with pytest.raises(ValueError, match="'student' checkpoint but its name says 'base'"):
        collect(tmp_path / "m")
    (tmp_path / "m" / "base-resnet18.json").unlink()
    _write(tmp_path / "m", "kd-resnet50.json", data)
    with pytest.raises(ValueError, match="evaluates a resnet18 but its name says resnet50"):
        collect(tmp_path / "m")


def test_caption_text_lies_inside_its_box() -> None:
    """Captions are white text on a filled black box measured with the same font metrics: every
    white pixel of the text falls inside the box (legible on any background)."""


    from pipeline.inference.drawing import draw_caption

    img = np.full((120, 260, 3), 128, np.uint8)
    box = draw_caption(img, "pred +12 -30 +5", (10, 60), 0.6)
    x1, y1, x2, y2 = box
    white = np.argwhere((img == 255).all(-1))
    assert len(white) > 20
    assert white[:, 1].min() >= x1 and white[:, 1].max() <= x2 and white[:, 0].min() >= y1 and white[:, 0].max() <= y2
    inside = img[y1:y2 + 1, x1:x2 + 1]
    assert ((inside == 0).all(-1) | (inside > 0).all(-1)).all()  # box is black where there is no text
    assert (img[:y1] == 128).all() and (img[y2 + 1:] == 128).all()  # nothing drawn outside the box
    # near the image border the caption moves inside instead of being cut off
    bx = draw_caption(img, "true -99 +99 -99", (250, 5), 0.6)
    assert 0 <= bx[0] and bx[2] <= 259 and 0 <= bx[1] and bx[3] <= 119


def test_training_mean_and_no_kd_rows_with_findings(tmp_path: Path) -> None:
    """The table has a predict-the-training-mean row (from the baselines evaluate
    records), the no-KD control row, and plain sentences on what each comparison shows."""
    base = (11.0, 35.0, 9.0)
    d = tmp_path / "eval"
    _write(d, "base-resnet18.json", _file("stage1", "resnet18", {"synth": _eval(6, 9, 5, 20, base)}))
    _write(d, "kd-resnet18.json", _file("student", "resnet18", {"synth": _eval(5.5, 8, 5, 20, base)}))
    _write(d, "nokd-resnet18.json", _file("student", "resnet18", {"synth": _eval(6.5, 9.5, 5.5, 20, base)}))
    _write(d, "ensemble-resnet18.json", _file("stage1", "resnet18", {"synth": _eval(6.1, 9.1, 5.0)}))
    rows = collect(d)
    assert [r.label for r in rows] == ["Predict the training mean", "Base-ResNet18", "Ensemble-ResNet18",
                                       "KD-ResNet18", "Student-ResNet18 without KD"]
    assert rows[0].results["synth"].mean == pytest.approx(55 / 3)
    out = tmp_path / "t.md"
    write_report(d, out, None)
    text = out.read_text()
    # without per-face errors there is no interval, so no verdict either
    assert ("synth: Ensemble-ResNet18 has 6.73 against 6.67 for the single network (no per-face errors: no "
            "interval, no verdict).") in text
    assert "synth: Student-ResNet18 without KD has 7.17 against 6.67 for the teacher network" in text
    assert "beats" not in text and "Differences in mean MAE" not in text
    assert "| **6.17** |" in text  # the training mean is never the bold best
    sources = text.split("Sources: ")[1]
    assert sources.count("base-resnet18.json") == 1  # the mean row's file is listed once, not twice


def test_pose_tile_captions_do_not_overlap() -> None:
    """The pred and true lines of a grid tile get separate boxes: the lower box never covers
    the upper line's text."""


    from pipeline.evaluation.figures import pose_tile
    from pipeline.inference.drawing import caption_height

    tile = pose_tile(np.full((160, 160, 3), 128, np.uint8), (10, -57, -1), (6, -61, 4), "err 4.7")
    h = caption_height(max(0.3, 160 / 420))
    rows = np.flatnonzero(((tile == 0).all(-1)).any(1))  # rows with caption background
    bottom = rows[rows > 80]
    assert bottom.max() - bottom.min() + 1 >= 2 * h  # two full boxes, not one box over another


def test_cli_from_dvc_reads_only_what_dvc_yaml_declares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--from-dvc` (dvc.yaml's report stage): the evaluation files that the project's dvc.yaml
    declares for the current params (run, students, students_control), never a file another
    configuration or an earlier student list left under --metrics-dir."""
    import shutil
    import subprocess
    import sys

    import yaml

    from tests.helpers.params import full_params

    root = Path(__file__).resolve().parents[1]
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists():
        pytest.skip("dvc is not installed in this environment")
    shutil.copy(root / "dvc.yaml", tmp_path / "dvc.yaml")
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    ev = tmp_path / "metrics" / "mine" / "eval"
    for name, kind, backbone in [("base-resnet18.json", "stage1", "resnet18"), ("kd-resnet18.json", "student", "resnet18"),
                                 ("nokd-resnet18.json", "student", "resnet18"), ("kd-resnet34.json", "student", "resnet34")]:
        _write(ev, name, _file(kind, backbone, {"AFLW2000": _eval(5.0, 4.0, 3.0)}))
    monkeypatch.chdir(tmp_path)
    args = ["--metrics-dir", "metrics/mine/eval", "--out", "t.md", "--plot", "t.png"]

    def labels(params: dict, *flags: str) -> list[str]:
        Path("params.yaml").write_text(yaml.safe_dump(full_params(params)))
        res = CliRunner().invoke(cli, [*args, *flags])
        assert res.exit_code == 0, res.output
        table = [line.split(" | ")[0][2:] for line in Path("t.md").read_text().splitlines() if line.startswith("| ")]
        assert table[0] == "Method"
        return table[1:]

    every = labels({"run": "mine"})
    # without the flag: every file under the folder
    assert every == ["Base-ResNet18", "KD-ResNet18", "KD-ResNet34", "Student-ResNet18 without KD"], every
    declared = labels({"run": "mine", "students": ["resnet18"], "students_control": ["resnet18"], "students_soft": []},
                      "--from-dvc")
    assert declared == ["Base-ResNet18", "KD-ResNet18", "Student-ResNet18 without KD"], declared
    declared = labels({"run": "mine", "students": ["resnet18", "resnet34"], "students_control": [], "students_soft": []},
                      "--from-dvc")
    assert declared == ["Base-ResNet18", "KD-ResNet18", "KD-ResNet34"], declared  # no control student: nokd not read
    # a declared file that is not there yet: named, not skipped
    Path("params.yaml").write_text(yaml.safe_dump(full_params({"run": "mine", "students": ["resnet18", "resnet50"],
                                                               "students_soft": []})))
    res = CliRunner().invoke(cli, [*args, "--from-dvc"])
    assert res.exit_code == 1 and "evaluation file 'metrics/mine/eval/kd-resnet50.json' is missing" in res.output
    # another run's folder: dvc.yaml declares nothing there
    Path("params.yaml").write_text(yaml.safe_dump(full_params({"run": "other"})))
    res = CliRunner().invoke(cli, [*args, "--from-dvc"])
    assert res.exit_code == 1 and "dvc.yaml declares no evaluation metrics under 'metrics/mine/eval'" in res.output


def _errors(path: Path, ids: list[str], err: np.ndarray, p: int = 0, s: int = 1) -> None:
    from pipeline.evaluation.errors import errors_frame, write_errors

    write_errors(errors_frame(np.array(ids, dtype=object), np.array(["synth"] * len(ids)), err, p, s), path)


def test_intervals_decide_the_verdicts(tmp_path: Path) -> None:
    """With per-face errors: KD clearly lower than its teacher "beats" it (interval below 0); KD
    within noise of the no-KD control "shows no measurable difference"; the same comparisons go
    to the summary JSON (a DVC metric) and to a table of differences."""
    import json

    rng = np.random.default_rng(0)
    n = 400
    ids = [f"synth/{i}.png#0" for i in range(n)]
    base_err = rng.gamma(2.0, 3.0, size=(n, 3))
    kd_err = np.clip(base_err - 0.6 + rng.normal(0, 0.3, (n, 3)), 0, None)
    nokd_err = kd_err[rng.permutation(n)]  # the same errors on other faces: no systematic difference
    d, e = tmp_path / "eval", tmp_path / "errors"
    e.mkdir()
    for role, err in (("base", base_err), ("kd", kd_err), ("nokd", nokd_err)):
        m = err.mean(0)
        _write(d, f"{role}-resnet18.json", _file("stage1" if role == "base" else "student", "resnet18",
                                                 {"synth": _eval(*m, n=n)}))
        _errors(e / f"{role}-resnet18.parquet", ids, err)
    out, summary = tmp_path / "t.md", tmp_path / "report.json"
    write_report(d, out, None, errors_dir=e, summary=summary)
    text = out.read_text()
    assert re.search(r"KD-ResNet18 beats its teacher \(\d+\.\d\d vs \d+\.\d\d; Δ -0\.\d\d, 95 % CI \[-0\.\d\d, "
                     r"-0\.\d\d\], n = 400\)", text), text
    assert "shows no measurable difference from the same student trained without KD" in text
    table = text.split("Differences in mean MAE")[1]
    assert "| synth | KD-ResNet18 − Base-ResNet18 |" in table and "| lower (beats) |" in table
    got = json.loads(summary.read_text())["differences"]["synth"]
    assert got["kd-resnet18 - base-resnet18"]["verdict"] == "lower"
    assert got["kd-resnet18 - nokd-resnet18"]["verdict"] == "none"
    assert got["kd-resnet18 - base-resnet18"]["ci_high"] < 0 < got["kd-resnet18 - nokd-resnet18"]["ci_high"]


def test_missing_errors_file_is_named(tmp_path: Path) -> None:
    d, e = tmp_path / "eval", tmp_path / "errors"
    e.mkdir()
    _write(d, "base-resnet18.json", _file("stage1", "resnet18", {"synth": _eval(6, 9, 5)}))
    with pytest.raises(ValueError, match=r"per-face errors '.*base-resnet18\.parquet' not found: rerun"):
        write_report(d, tmp_path / "t.md", None, errors_dir=e)


def test_online_teacher_row_and_its_comparison(tmp_path: Path) -> None:
    """A student distilled online (`online-<backbone>.json`, a student checkpoint) gets its own
    row, and the store's student is compared with it on the same faces."""
    rng = np.random.default_rng(1)
    n = 300
    ids = [f"synth/{i}.png#0" for i in range(n)]
    base_err = rng.gamma(2.0, 3.0, size=(n, 3))
    online_err = np.clip(base_err - 0.5 + rng.normal(0, 0.2, (n, 3)), 0, None)
    kd_err = np.clip(online_err + 0.4 + rng.normal(0, 0.2, (n, 3)), 0, None)
    d, e = tmp_path / "eval", tmp_path / "errors"
    e.mkdir()
    for role, err in (("base", base_err), ("kd", kd_err), ("online", online_err)):
        _write(d, f"{role}-resnet18.json", _file("stage1" if role == "base" else "student", "resnet18",
                                                 {"synth": _eval(*err.mean(0), n=n)}))
        _errors(e / f"{role}-resnet18.parquet", ids, err)
    assert [r.label for r in collect(d)] == ["Base-ResNet18", "KD-ResNet18", "KD-online-ResNet18"]
    out, summary = tmp_path / "t.md", tmp_path / "report.json"
    write_report(d, out, None, errors_dir=e, summary=summary)
    text = out.read_text()
    assert ("synth: KD-ResNet18 is worse than the same student distilled online (5.78 vs 5.38; "
            "Δ +0.40, 95 % CI [+0.39, +0.41], n = 300): what caching the teacher's labels costs.") in text
    assert "| synth | KD-ResNet18 − KD-online-ResNet18 |" in text
    assert json.loads(summary.read_text())["differences"]["synth"]["kd-resnet18 - online-resnet18"]["verdict"] == "higher"
    _write(d, "online-resnet18.json", _file("stage1", "resnet18", {"synth": _eval(1, 2, 3)}))
    with pytest.raises(ValueError, match="its name says 'online'"):
        collect(d)


def _controls(tmp_path: Path, roles: tuple[str, ...], n: int = 300) -> tuple[Path, Path]:
    """Evaluation files and per-face errors of a base network and the given student roles (ResNet18):
    the students share most of their per-face error, each role shifted by its own amount."""
    rng = np.random.default_rng(2)
    ids = [f"synth/{i}.png#0" for i in range(n)]
    base_err = rng.gamma(2.0, 3.0, size=(n, 3))
    shift = {"base": 0.0, "kd": -0.5, "nokd": -0.6, "soft": -0.55, "online": -0.5}
    d, e = tmp_path / "eval", tmp_path / "errors"
    e.mkdir(parents=True, exist_ok=True)
    for role in ("base", *roles):
        err = np.clip(base_err + shift[role] + rng.normal(0, 0.2, (n, 3)), 0, None)
        _write(d, f"{role}-resnet18.json", _file("stage1" if role == "base" else "student", "resnet18",
                                                 {"synth": _eval(*err.mean(0), n=n)}))
        _errors(e / f"{role}-resnet18.parquet", ids, err)
    return d, e


def test_soft_label_row_and_its_comparisons(tmp_path: Path) -> None:
    """A teacher-free soft-label student (`soft-<backbone>.json`, `students_soft`) gets its row, and
    Table 5 compares KD with it and it with the student without KD; "without KD − base" is there
    whether or not a soft row is."""
    d, e = _controls(tmp_path, ("kd", "nokd", "soft"))
    assert [r.label for r in collect(d)] == ["Base-ResNet18", "KD-ResNet18", "Student-ResNet18 without KD",
                                             "Soft-label-ResNet18 (no teacher)"]
    out, summary = tmp_path / "t.md", tmp_path / "report.json"
    write_report(d, out, None, errors_dir=e, summary=summary)
    text = out.read_text()
    table = text.split("Differences in mean MAE")[1].split("\n- ")[0]
    lines = [x.split(" | ")[1] for x in table.splitlines() if x.startswith("| synth")]
    assert lines == ["KD-ResNet18 − Base-ResNet18", "KD-ResNet18 − Student-ResNet18 without KD",
                     "KD-ResNet18 − Soft-label-ResNet18 (no teacher)", "Student-ResNet18 without KD − Base-ResNet18",
                     "Soft-label-ResNet18 (no teacher) − Student-ResNet18 without KD"]
    assert "synth: Student-ResNet18 without KD beats the teacher network (" in text
    assert "KD − without KD, not KD − teacher, is the effect of KD." in text
    assert "synth: KD-ResNet18 is worse than the teacher-free soft-label student (" in text
    assert "Soft-label (no teacher) = the same student recipe with a Gaussian soft label" in text
    got = json.loads(summary.read_text())["differences"]["synth"]
    assert sorted(got) == ["kd-resnet18 - base-resnet18", "kd-resnet18 - nokd-resnet18", "kd-resnet18 - soft-resnet18",
                           "nokd-resnet18 - base-resnet18", "soft-resnet18 - nokd-resnet18"]
    assert got["nokd-resnet18 - base-resnet18"]["verdict"] == "lower"
    _write(d, "soft-resnet18.json", _file("stage1", "resnet18", {"synth": _eval(1, 2, 3)}))
    with pytest.raises(ValueError, match="'stage1' checkpoint but its name says 'soft' \\(expected kind 'student'\\)"):
        collect(d)


def test_without_soft_rows_no_soft_comparison(tmp_path: Path) -> None:
    d, e = _controls(tmp_path, ("kd", "nokd"))
    out, summary = tmp_path / "t.md", tmp_path / "report.json"
    write_report(d, out, None, errors_dir=e, summary=summary)
    assert sorted(json.loads(summary.read_text())["differences"]["synth"]) == [
        "kd-resnet18 - base-resnet18", "kd-resnet18 - nokd-resnet18", "nokd-resnet18 - base-resnet18"]
    assert "Soft-label" not in out.read_text() and "soft-label student" not in out.read_text()


def test_seed_spread_beside_the_verdicts(tmp_path: Path) -> None:
    """`--seed-spread`: the benchmark's seed-to-seed SD is printed beside every verdict, and a
    difference within two SDs is marked as one another training seed could overturn."""
    d, e = _controls(tmp_path, ("kd", "nokd"))
    spread = tmp_path / "spread.json"
    spread.write_text(json.dumps({"source": "kd_effect sigma 0, 3 seeds", "student_sd": 0.11, "delta_sd": 0.08}))
    out, png, summary = tmp_path / "t.md", tmp_path / "t.png", tmp_path / "report.json"
    res = CliRunner().invoke(cli, ["--metrics-dir", str(d), "--errors-dir", str(e), "--summary", str(summary),
                                   "--seed-spread", str(spread), "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert ("Seed-to-seed spread (kd_effect sigma 0, 3 seeds): a student's mean MAE ±0.11, a paired difference "
            "between two students ±0.08") in text
    assert "can be overturned by training with a different seed" in text and "2 × 0.08 = 0.16" in text
    # KD − without KD is +0.1 here: measurable on the faces, yet within two seed SDs
    kd_nokd = next(x for x in text.splitlines() if x.startswith("- synth: KD-ResNet18 is worse than the same student"))
    assert kd_nokd.endswith("; seed-to-seed spread of a difference: ±0.08 (kd_effect sigma 0, 3 seeds), so another "
                            "training seed could overturn this): what distillation adds.")
    kd_base = next(x for x in text.splitlines() if x.startswith("| synth | KD-ResNet18 − Base-ResNet18 |"))
    assert kd_base.endswith("| ±0.08: beyond 2 seed SDs |")
    assert json.loads(summary.read_text())["seed_spread"] == {"source": "kd_effect sigma 0, 3 seeds",
                                                               "student_sd": 0.11, "delta_sd": 0.08}


@pytest.mark.parametrize(("body", "message"), [
    ({"source": "x", "student_sd": 0.1}, "missing key 'delta_sd'"),
    ({"source": "x", "student_sd": 0.1, "delta_sd": 0.1, "seeds": 3}, "unknown key 'seeds'"),
    ({"source": "x", "student_sd": "0.1", "delta_sd": 0.1}, "'student_sd' is '0.1', expected a number"),
    ({"source": "x", "student_sd": 0.1, "delta_sd": -0.2}, "'delta_sd' is -0.2, expected a standard deviation > 0"),
    ({"source": "", "student_sd": 0.1, "delta_sd": 0.1}, "'source' is '', expected a non-empty name"),
    ([0.1, 0.1], "expected an object with keys ['source', 'student_sd', 'delta_sd']"),
])
def test_bad_seed_spread_is_refused_in_one_line(tmp_path: Path, body: object, message: str) -> None:
    d, _ = _controls(tmp_path, ("kd",))
    spread = tmp_path / "spread.json"
    spread.write_text(json.dumps(body))
    out = tmp_path / "t.md"
    res = CliRunner().invoke(cli, ["--metrics-dir", str(d), "--seed-spread", str(spread), "--out", str(out),
                                   "--plot", str(tmp_path / "t.png")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {str(spread)!r}") and message in lines[0], res.output
    assert not out.exists()
    res = CliRunner().invoke(cli, ["--metrics-dir", str(d), "--seed-spread", str(tmp_path / "none.json"),
                                   "--out", str(out), "--plot", str(tmp_path / "t.png")])
    assert res.exit_code == 1 and "seed spread" in res.output and "none.json' not found" in res.output
