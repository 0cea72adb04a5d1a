"""The Table-5 report: file naming convention, parsing, ordering, Markdown + PNG, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.evaluation.report import collect, markdown_table, parse_eval, write_report
from stages.report import cli


def _eval(pitch: float, yaw: float, roll: float, n: int = 10) -> dict:
    return {"pitch": pitch, "yaw": yaw, "roll": roll, "mean": (pitch + yaw + roll) / 3, "n": n}


def _write(d: Path, name: str, data: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(json.dumps(data))


@pytest.fixture()
def metrics(tmp_path: Path) -> Path:
    d = tmp_path / "metrics"
    _write(d / "eval", "kd-resnet50.json", {"AFLW2000": _eval(4.0, 3.0, 2.9), "BIWI": _eval(4.5, 3.6, 3.7)})
    _write(d / "eval", "base-resnet50.json", {"AFLW2000": _eval(5.0, 3.5, 3.0), "BIWI": _eval(5.0, 4.0, 3.5)})
    _write(d / "eval", "kd-resnet18.json", {"AFLW2000": _eval(5.2, 3.9, 3.4)})
    _write(d / "eval", "ensemble-resnet50.json", {"test_sets": {"AFLW2000": _eval(4.9, 3.4, 3.0)}})
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


def test_parse_eval_shapes() -> None:
    a = parse_eval({"t": {"mae_pitch": 1, "mae_yaw": 2, "mae_roll": 3}})["t"]
    assert (a.pitch, a.yaw, a.roll, a.mean) == (1, 2, 3, 2)
    b = parse_eval({"results": {"t": {"mae": {"pitch": 1, "yaw": 2, "roll": 6, "mean": 3}, "n": 5}}})["t"]
    assert (b.mean, b.n) == (3, 5)
    with pytest.raises(ValueError, match="no test-set MAE"):
        parse_eval({"t": {"loss": 1}}, "x.json")


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        collect(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(ValueError, match="base-resnet50.json"):
        collect(tmp_path / "m")
    _write(tmp_path / "m" / "a", "kd-resnet18.json", {"t": _eval(1, 2, 3)})
    _write(tmp_path / "m" / "b", "kd-resnet18.json", {"t": _eval(1, 2, 3)})
    with pytest.raises(ValueError, match="two evaluations of KD-resnet18"):
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
    rows = [
        {"dataset": "AFLW2000", "p": p, "s": s, "A": 1, "n": 10, "mae_pitch": 4.0 + p / 10, "mae_yaw": 3.0,
         "mae_roll": 3.0, "mae_mean": (10.0 + p / 10) / 3}
        for p, s in ((0, 1), (1, 1), (2, 1), (0, 2), (2, 2))
    ]
    path.write_text(json.dumps({"p_max": 2, "s": [1, 2], "best": {}, "single": {}, "rows": rows}))
    return path


def test_ensemble_row_from_grid(metrics: Path, tmp_path: Path) -> None:
    from pipeline.evaluation.report import ensemble_row_from_grid

    row = ensemble_row_from_grid(_grid(tmp_path / "grid.json"), 2, 2, "resnet50")
    assert row.label == "Ensemble-ResNet50" and row.results["AFLW2000"].pitch == pytest.approx(4.2)
    with pytest.raises(ValueError, match="no ensemble with p=15, s=5"):
        ensemble_row_from_grid(tmp_path / "grid.json", 15, 5, "resnet50")
    with pytest.raises(ValueError, match="two evaluations of Ensemble-resnet50"):
        collect(metrics, [row])  # metrics already holds ensemble-resnet50.json


def test_cli_with_ensemble_grid(metrics: Path, tmp_path: Path) -> None:
    (metrics / "eval" / "ensemble-resnet50.json").unlink()
    params = tmp_path / "params.yaml"
    params.write_text("teacher_labels:\n  p: 2\n  s: 2\ntrain_teacher:\n  backbone: resnet50\n")
    out, png = tmp_path / "t.md", tmp_path / "t.png"
    res = CliRunner().invoke(cli, ["--metrics-dir", str(metrics), "--ensemble-grid", str(_grid(tmp_path / "g.json")),
                                   "--params", str(params), "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    line = next(x for x in out.read_text().splitlines() if x.startswith("| Ensemble-ResNet50"))
    assert line.startswith("| Ensemble-ResNet50 | 4.20 | 3.00 | 3.00 | 3.40 |")


def test_reads_hpekd_evaluate_output(tmp_path: Path) -> None:
    """The JSON of `hpekd evaluate` (pipeline.evaluation.evaluate.evaluate_checkpoint), with its identity check."""
    block = {"mae_pitch": 5.0, "mae_yaw": 4.0, "mae_roll": 3.0, "mae_mean": 4.0, "n": 9, "dropped": 0}
    data = {"model": "models/student_resnet18.pt", "kind": "student", "backbone": "resnet18", "split": "test",
            "datasets": {"synth_test": block, "biwi": {**block, "mae_mean": 4.5}}, "all": block}
    _write(tmp_path / "m", "kd-resnet18.json", data)
    (row,) = collect(tmp_path / "m")
    assert sorted(row.results) == ["biwi", "synth_test"] and row.results["biwi"].mean == 4.5
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
    import numpy as np

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
    """Issue 13: the table has a predict-the-training-mean row (from the baselines evaluate
    records), the no-KD control row, and plain sentences on what each comparison shows."""
    def block(p, y, r, base=None):
        b = {"mae_pitch": p, "mae_yaw": y, "mae_roll": r, "mae_mean": (p + y + r) / 3, "n": 20, "dropped": 0}
        if base:
            b.update({f"baseline_mae_{a}": v for a, v in zip(("pitch", "yaw", "roll"), base)})
        return b

    base = (11.0, 35.0, 9.0)
    d = tmp_path / "eval"
    _write(d, "base-resnet18.json", {"kind": "stage1", "backbone": "resnet18", "datasets": {"synth": block(6, 9, 5, base)}})
    _write(d, "kd-resnet18.json", {"kind": "student", "backbone": "resnet18", "datasets": {"synth": block(5.5, 8, 5, base)}})
    _write(d, "nokd-resnet18.json", {"kind": "student", "backbone": "resnet18",
                                     "datasets": {"synth": block(6.5, 9.5, 5.5, base)}})
    _write(d, "ensemble-resnet18.json", {"synth": _eval(6.1, 9.1, 5.0)})
    rows = collect(d)
    assert [r.label for r in rows] == ["Predict the training mean", "Base-ResNet18", "Ensemble-ResNet18",
                                       "KD-ResNet18", "Student-ResNet18 without KD"]
    assert rows[0].results["synth"].mean == pytest.approx(55 / 3)
    out = tmp_path / "t.md"
    write_report(d, out, None)
    text = out.read_text()
    assert "synth: the ensemble does not help here (6.73 vs 6.67 for the single network)." in text
    assert "KD-ResNet18 beats its teacher (6.17 vs 6.67) and is better than the same student trained without KD" in text
    assert "| **6.17** |" in text  # the training mean is never the bold best
    sources = text.split("Sources: ")[1]
    assert sources.count("base-resnet18.json") == 1  # the mean row's file is listed once, not twice


def test_pose_tile_captions_do_not_overlap() -> None:
    """The pred and true lines of a grid tile get separate boxes: the lower box never covers
    the upper line's text."""
    import numpy as np

    from pipeline.evaluation.figures import pose_tile
    from pipeline.inference.drawing import caption_height

    tile = pose_tile(np.full((160, 160, 3), 128, np.uint8), (10, -57, -1), (6, -61, 4), "err 4.7")
    h = caption_height(max(0.3, 160 / 420))
    rows = np.flatnonzero(((tile == 0).all(-1)).any(1))  # rows with caption background
    bottom = rows[rows > 80]
    assert bottom.max() - bottom.min() + 1 >= 2 * h  # two full boxes, not one box over another
