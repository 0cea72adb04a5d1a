"""Every plot dvc.yaml declares names fields that exist in the files the stages write
(`dvc plots show --json` returns data and no error for each), so that `dvc plots show` never renders an empty chart.

The plot files come either from the same functions the stages use (the training engine's plots
writer, the ensemble grid writer) fed small made-up results, or from the committed results of
the project's params.yaml (plots/<run>/). They go into a scratch DVC repository whose
params.yaml is the project's (dvc.yaml's top-level plots name plots/${run}/...) and whose
dvc.yaml holds the project's plot definitions: the top-level ones and those declared on stage
outputs (foreach stages expanded for their params list).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.core.config import default_config
from pipeline.evaluation.ensemble_grid import EnsembleGridConfig, write_grid
from pipeline.training.engine import write_metrics

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _resolve(path: str, params: dict) -> str:
    return path.replace("${run}", str(params["run"]))


def _declared(params: dict) -> list[dict]:
    """The top-level plots as declared (DVC resolves their ${run} from params.yaml), then every
    stage's plots with ${run} and, for a foreach stage, ${item} (each entry of its list) filled in."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    plots = list(spec.get("plots", []))
    for stage in spec["stages"].values():
        body = stage.get("do", stage)
        foreach = stage.get("foreach")
        items = params[foreach.strip("${}")] if isinstance(foreach, str) else [None]
        for item in items:
            for entry in body.get("plots", []):
                for path, props in entry.items():
                    props = {k: v for k, v in (props or {}).items() if k != "cache"}
                    path = _resolve(path, params)
                    plots.append({path.replace("${item}", item) if item else path: props})
    return plots


def _plot_files(plots: list[dict], params: dict) -> list[str]:
    """Every file the plots read, ${run} resolved."""
    files = []
    for entry in plots:
        for key, props in entry.items():
            ys = props.get("y") if isinstance(props, dict) else None
            files += [_resolve(f, params) for f in (list(ys) if isinstance(ys, dict) else [key])]
    return files


def _files(root: Path, plots: list[dict], params: dict) -> None:
    history = [{"epoch": e, "lr": 1e-3, "loss": 3.0 / e, "mae_pitch": 9.0 / e, "mae_yaw": 12.0 / e,
                "mae_roll": 8.0 / e, "mae_mean": 29.0 / 3 / e} for e in (1, 2, 3)]
    rows = [{"dataset": "synth_test", "p": p, "s": s, "A": (2 * p // s + 1) ** 2, "n": 10,
             "mae_pitch": 5.0 + p, "mae_yaw": 6.0, "mae_roll": 4.0, "mae_mean": 5.0 + p / 3}
            for s in (1, 2) for p in (0, 2)] + [{"dataset": "synth_test", "p": 1, "s": 1, "A": 9, "n": 10,
                                                 "mae_pitch": 5.5, "mae_yaw": 6.0, "mae_roll": 4.0, "mae_mean": 5.2}]
    for f in _plot_files(plots, params):
        path = root / f
        if path.exists():
            continue
        if f.endswith(".png"):
            import cv2

            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
        elif "ensemble_grid" in f:
            write_grid(rows, default_config(EnsembleGridConfig, "ensemble_grid", p_max=2, s=(1, 2)), str(root / "grid.json"), str(path),
                       str(root / "grid.png"))
        elif f.endswith(".csv"):
            write_metrics(None, path, history, None)
        else:
            raise AssertionError(f"no writer known for the declared plot file {f}")


def _committed(root: Path, plots: list[dict], params: dict) -> None:
    for f in _plot_files(plots, params):
        assert (ROOT / f).is_file(), f"declared plot file {f} is not committed (params.yaml run {params['run']!r})"
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / f, root / f)


@pytest.mark.skipif(not DVC.exists(), reason="dvc is not installed in this environment")
@pytest.mark.parametrize("source", ["written", "committed"])
def test_every_declared_plot_has_data(tmp_path: Path, source: str) -> None:
    params = _params()
    plots = _declared(params)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(DVC), "init", "-q"], cwd=tmp_path, check=True)
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "params.yaml")
    (_files if source == "written" else _committed)(tmp_path, plots, params)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    res = subprocess.run([str(DVC), "plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert not out.get("errors"), out["errors"]
    assert "WARNING" not in res.stderr, res.stderr
    names = [next(iter(p)) for p in plots]
    for name in names:
        assert out["data"].get(name), f"plot {name!r} has no data"
    # the curves have epochs on x, never the seconds a run took
    for name, entries in out["data"].items():
        for e in entries:
            enc = (e.get("content") or {}).get("encoding", {})
            if "x" in enc:
                assert enc["x"]["field"] in ("epoch", "p"), (name, enc["x"])
    shutil.rmtree(tmp_path / ".dvc", ignore_errors=True)
