"""Sharing teacher labels between teams through a DVC remote (README "Sharing teacher labels between teams").

Team A runs the pipeline (stage 1, teacher labels, a student, evaluations, report) in a git +
DVC repository, ``dvc push``es to a local-directory remote and commits. Team B clones the
git repository elsewhere (team A's directory is moved away so nothing can leak), adds a
backbone to the ``students`` list and runs ``dvc repro --pull``: what the unchanged stages
made comes from the remote, and only the new student's stages and the report run — never
stage 1 or the teacher-label job. ``dvc status`` then shows that changing a student
parameter or the student list touches student stages only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_tiny_dataset

from tests.helpers.params import full_params

pytestmark = pytest.mark.slow

# the default params (complete: every stage refuses a section that lacks a key) with these values
PARAMS = {
    "students": ["resnet18"],
    "train_teacher": {"backbone": "resnet18", "input_size": 32, "batch_size": 8, "epochs": 1, "workers": 0,
                      "device": "cpu", "photometric": False},
    "teacher_labels": {"p": 2, "s": 2, "views": 2, "shard_rows": 32, "chunk_rows": 16, "batch_size": 8, "workers": 0,
                       "loader_workers": 0, "device": "cpu"},
    "evaluate": {"batch_size": 16, "workers": 0, "device": "cpu"},
    "train_student": {"input_size": None, "batch_size": 8, "epochs": 1, "workers": 0, "device": "cpu",
                      "photometric": False},
}


def _write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


DVC_YAML = """\
stages:
  train_teacher:
    cmd: hpekd train-teacher --boxes data/boxes.parquet --out models/teacher.pt
      --metrics metrics/train_teacher.json --plots metrics/train_teacher.csv --no-progress
    deps: [data]
    params: [train_teacher]
    outs: [models/teacher.pt]
    metrics:
      - metrics/train_teacher.json: {cache: false}
    plots:
      - metrics/train_teacher.csv: {cache: false}

  evaluate_teacher:
    cmd: hpekd evaluate --model models/teacher.pt --boxes data/boxes.parquet --metrics metrics/eval/base-resnet18.json
    deps: [models/teacher.pt, data]
    metrics:
      - metrics/eval/base-resnet18.json: {cache: false}

  teacher_labels:
    cmd: hpekd teacher-labels --model models/teacher.pt --boxes data/boxes.parquet --out labels/teacher.zarr
    deps: [models/teacher.pt, data]
    params: [teacher_labels]
    outs: [labels/teacher.zarr]

  train_student:
    foreach: ${students}
    do:
      cmd: hpekd train-student --labels labels/teacher.zarr --boxes data/boxes.parquet --backbone ${item}
        --out models/student_${item}.pt --metrics metrics/train_student_${item}.json
        --plots metrics/train_student_${item}.csv --no-progress
      deps: [labels/teacher.zarr, data]
      params: [train_student]
      outs:
        - models/student_${item}.pt
      metrics:
        - metrics/train_student_${item}.json: {cache: false}
      plots:
        - metrics/train_student_${item}.csv: {cache: false}

  evaluate_student:
    foreach: ${students}
    do:
      cmd: hpekd evaluate --model models/student_${item}.pt --boxes data/boxes.parquet
        --metrics metrics/eval/kd-${item}.json
      deps:
        - models/student_${item}.pt
        - data
      metrics:
        - metrics/eval/kd-${item}.json: {cache: false}

  report:
    cmd: hpekd report --metrics-dir metrics/eval --out reports/table5.md --plot reports/table5.png
    deps: [metrics/eval]
    outs: [reports/table5.md, reports/table5.png]
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's hpekd
    env.update(
        DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore",
        GIT_AUTHOR_NAME="team", GIT_AUTHOR_EMAIL="team@example.org",
        GIT_COMMITTER_NAME="team", GIT_COMMITTER_EMAIL="team@example.org",
    )
    return env


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def dvc(cwd: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def git(cwd: Path, *args: str) -> str:
    return _run(["git", *args], cwd)


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_data(repo: Path) -> None:
    """Tiny dataset under data/ with a repo-relative image root (so a clone finds its own copy)."""
    boxes = make_tiny_dataset(repo / "data", n_train=24, n_test=8, size=48, seed=5)
    df = pd.read_parquet(boxes)
    df["root"] = "data/images"
    df.to_parquet(boxes, index=False)


def test_team_b_trains_a_new_student_from_shared_labels(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    remote = tmp_path / "remote"
    a = tmp_path / "team_a"
    a.mkdir()
    # --- team A: build everything, push the DVC outputs, commit
    git(a, "init", "-q")
    dvc(a, "init", "-q")
    dvc(a, "config", "core.analytics", "false")
    dvc(a, "remote", "add", "-d", "store", str(remote))
    _write_params(a, full_params(PARAMS))
    (a / "dvc.yaml").write_text(DVC_YAML)
    make_data(a)
    dvc(a, "add", "-q", "data")
    out = dvc(a, "repro")
    assert ran_stages(out) == {"train_teacher", "evaluate_teacher", "teacher_labels", "train_student@resnet18",
                               "evaluate_student@resnet18", "report"}, out
    assert "KD-ResNet18" in (a / "reports" / "table5.md").read_text()
    dvc(a, "push")
    git(a, "add", "-A")
    git(a, "commit", "-q", "-m", "team A: teacher labels and a first student")

    # --- team B: clone elsewhere; team A's working copy (and its DVC cache) is gone
    b = tmp_path / "team_b"
    git(tmp_path, "clone", "-q", str(a), str(b))
    shutil.move(str(a), str(tmp_path / "team_a_away"))
    params = yaml.safe_load((b / "params.yaml").read_text())
    assert params["students"] == ["resnet18"]
    params["students"] = ["resnet18", "resnet34"]
    _write_params(b, params)
    # `dvc repro --pull` fetches what the unchanged stages produced (data, teacher, labels) from
    # the remote instead of recomputing it, then runs only the new student's stages
    out = dvc(b, "repro", "--pull")
    assert ran_stages(out) == {"train_student@resnet34", "evaluate_student@resnet34", "report"}, out
    assert (b / "labels" / "teacher.zarr" / "zarr.json").is_file()
    table = (b / "reports" / "table5.md").read_text()
    assert "KD-ResNet34" in table and "KD-ResNet18" in table and "Base-ResNet18" in table
    assert _status(b) == {}
    # a student parameter change invalidates the students (and, through them, the report) only
    assert params["train_student"]["seed"] != 1
    _write_params(b, {**params, "train_student": {**params["train_student"], "seed": 1}})
    assert set(_status(b)) == {"train_student@resnet18", "train_student@resnet34"}
    # ... and another student list too
    _write_params(b, {**params, "students": ["resnet18", "resnet34", "resnet50"]})
    assert set(_status(b)) == {"train_student@resnet50", "evaluate_student@resnet50"}


def _status(repo: Path) -> dict:
    text = dvc(repo, "status", "--json").strip().splitlines()
    return json.loads(text[-1]) if text else {}
