"""The paper's protocols, run as a user would (README "Reproducing the paper").

The four datasets in their real on-disk layouts with the paper's four box files
(tests/helpers/protocol_data.py) go under ``data/raw/`` of a copy of the project; then, in one
workspace, each protocol is switched to and run with exactly the README's commands, with the
CPU-sized recipe ``configs/rehearsal.yaml`` stacked on it:

    hpekd params apply configs/protocolN.yaml configs/rehearsal.yaml
    dvc repro

``dvc repro`` must end with rc 0, every face its published box and split, Table 5 exactly the
protocol's test sets and methods (never a row of another configuration), and a second
``dvc repro`` nothing to do. Protocol 1 also runs without ``300W_LP.json``
(configs/protocol1_detector.yaml), and a released model of the paper is imported and evaluated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers.protocol_data import ProtocolData, make_protocol_data

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# the README's walkthrough, with the rehearsal recipe stacked on the protocol
SWITCH = "hpekd params apply configs/{protocol}.yaml configs/rehearsal.yaml"
RUN = "dvc repro"
METHODS = {"Predict the training mean", "Base-ResNet18", "Ensemble-ResNet18", "KD-ResNet18",
           "Student-ResNet18 without KD", "Soft-label-ResNet18 (no teacher)"}
PROTOCOLS = {  # run name -> ({dataset: (reader format, its split; None = the box file's type)}, Table 5's test sets)
    "protocol1": ({"300w_lp": ("300w_lp", "train"), "aflw2000": ("aflw2000", "test"), "biwi": ("biwi", "test")},
                  {"aflw2000", "biwi"}),
    "protocol2": ({"aflw": ("aflw", None)}, {"aflw"}),
    "protocol3": ({"biwi": ("biwi", None)}, {"biwi"}),
}



def test_readme_holds_the_rehearsed_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for protocol in PROTOCOLS:
        assert f"hpekd params apply configs/{protocol}.yaml" in readme, protocol
    for cmd in ("dvc repro", "hpekd params reset", "hpekd params apply configs/protocol1_detector.yaml",
                "hpekd params apply configs/protocol1.yaml configs/rehearsal.yaml"):
        assert cmd in readme, f"README's walkthrough lacks `{cmd}`"


def _sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(cwd))
    return subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)


def _ok(cmd: str, cwd: Path) -> str:
    res = _sh(cmd, cwd)
    assert res.returncode == 0, f"`{cmd}` failed (rc {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ProtocolData]:
    """A fresh copy of the project (code, configs, dvc.yaml, the default params.yaml) with the four
    datasets and their box files under data/raw/."""
    proj = tmp_path_factory.mktemp("project")
    for name in ("pipeline", "stages", "configs", "benchmarks/results"):  # results: the report's seed spread
        shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, proj / name)
    _ok("git init -q && dvc init -q", proj)
    data = make_protocol_data(proj / "data" / "raw", n_300wlp=64, n_aflw2000=16, n_biwi_per_seq=5, n_aflw_images=24)
    return proj, data


def _table5_sets_and_methods(text: str) -> tuple[set[str], set[str]]:
    body = text.splitlines()
    start = next(i for i, line in enumerate(body) if line.startswith("|"))
    lines = []
    for line in body[start:]:  # the first table only (the differences table follows)
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    sets = {c[: -len(" MAE")] for c in header if c.endswith(" MAE")}
    methods = {line.strip("|").split("|")[0].strip() for line in lines[2:]}
    return sets, methods


def _check_boxes(proj: Path, data: ProtocolData, datasets: dict[str, tuple[str, str | None]]) -> None:
    """Every face the box file lists (within ±99°) has exactly its published box and its split."""
    boxes = pd.read_parquet(proj / "data" / "boxes.parquet").set_index("sample_id")
    assert set(boxes["dataset"]) == set(datasets)
    for name, (fmt, split) in datasets.items():
        d = data.datasets[fmt]
        for face in d.faces:
            sid = d.sample_id(name, face)
            if face.bbox is None or not face.in_range:
                assert boxes.at[sid, "status"] == "rejected", sid
                continue
            row = boxes.loc[sid]
            assert row["status"] == "ok" and row["box_source"] == "file", (sid, row["reason"])
            np.testing.assert_allclose(row[["x1", "y1", "x2", "y2"]].to_numpy(float), face.bbox, atol=1e-3)
            assert row["split"] == (split or face.split), sid


def _declared_metrics(proj: Path) -> set[str]:
    """The metrics files `dvc metrics show` lists for the workspace."""
    shown = json.loads(_sh("dvc metrics show --json", proj).stdout)
    return {f for rev in shown.values() for f in (rev.get("data") or {})}


@pytest.mark.slow
def test_each_protocol_runs_end_to_end_as_the_walkthrough_says(project: tuple[Path, ProtocolData]) -> None:
    proj, data = project
    for run, (datasets, test_sets) in PROTOCOLS.items():
        out = _ok(SWITCH.format(protocol=run), proj)
        assert "wrote params.yaml" in out
        _ok(RUN, proj)
        _check_boxes(proj, data, datasets)
        table = (proj / "reports" / run / "table5.md").read_text()
        sets, methods = _table5_sets_and_methods(table)
        assert sets == test_sets, f"{run}: Table 5 test sets {sets}"
        assert methods == METHODS, f"{run}: Table 5 rows {methods}"
        assert "synth" not in table and not any(r in table for r in PROTOCOLS if r != run)
        for t in test_sets:  # every comparison carries its paired interval
            assert f"| {t} | KD-ResNet18 − Base-ResNet18 |" in table, table
        report = json.loads((proj / "metrics" / run / "report.json").read_text())["differences"]
        assert set(report) == test_sets
        metrics = _declared_metrics(proj)
        assert metrics and all(m.startswith(f"metrics/{run}/") for m in metrics), metrics
        again = _ok(RUN, proj)
        assert "Data and pipelines are up to date." in again and "Running stage" not in again, again
    # back to the synthetic default: one command, the committed params
    _ok("hpekd params reset", proj)
    assert (proj / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()


@pytest.mark.slow
def test_protocol1_without_300w_lp_json_takes_detector_boxes_for_300w_lp(project: tuple[Path, ProtocolData]) -> None:
    pytest.importorskip("yuface")
    proj, data = project
    (proj / "data" / "raw" / "300W_LP.json").rename(proj / "300W_LP.json.away")
    try:
        out = _ok(SWITCH.format(protocol="protocol1_detector"), proj)
        assert "relabel.sources.300w_lp: null -> detector" in out
        _ok(f"{RUN} relabel", proj)
    finally:
        (proj / "300W_LP.json.away").rename(proj / "data" / "raw" / "300W_LP.json")
    boxes = pd.read_parquet(proj / "data" / "boxes.parquet")
    ok = boxes[boxes["status"] == "ok"]
    src = ok.groupby("dataset")["box_source"].agg(lambda s: set(s))
    assert src["300w_lp"] <= {"detector:yunet"} and src["aflw2000"] == {"file"} and src["biwi"] == {"file"}
    summary = json.loads((proj / "metrics" / "protocol1" / "relabel.json").read_text())
    per = summary["per_dataset"]
    assert per["300w_lp"]["source"] == "detector" and per["aflw2000"]["source"] == "file"
    assert per["300w_lp"]["box_source"] == {"detector:yunet": per["300w_lp"]["ok"]} and per["300w_lp"]["ok"] > 0
    assert per["biwi"]["box_source"] == {"file": per["biwi"]["ok"]}


@pytest.mark.slow
def test_released_model_is_imported_and_evaluated_on_the_protocol_boxes(project: tuple[Path, ProtocolData]) -> None:
    """README "Evaluating the released models": a network saved in kd_oe_hpe's layout."""
    from tests.helpers.kd_oe_hpe import KdOeHpeNetwork

    proj, _ = project
    _ok(SWITCH.format(protocol="protocol1"), proj)
    _ok(f"{RUN} relabel", proj)
    torch.manual_seed(0)
    (proj / "models" / "ap1").mkdir(parents=True, exist_ok=True)
    torch.save(KdOeHpeNetwork("resnet18").state_dict(), proj / "models" / "ap1" / "resnet18.pth")
    _ok("hpekd import-weights --format kd_oe_hpe models/ap1/resnet18.pth --backbone resnet18 "
        "--out models/kd_resnet18.pt", proj)
    _ok("hpekd evaluate --model models/kd_resnet18.pt --boxes data/boxes.parquet "
        "--metrics metrics/released/kd-resnet18.json", proj)
    result = json.loads((proj / "metrics" / "released" / "kd-resnet18.json").read_text())
    assert set(result["datasets"]) == {"aflw2000", "biwi"}
    assert all(np.isfinite(v["mae_mean"]) for v in result["datasets"].values())
    assert re.search(r"hpekd import-weights --format kd_oe_hpe models/ap1/resnet\d+\.pth", (ROOT / "README.md").read_text())
