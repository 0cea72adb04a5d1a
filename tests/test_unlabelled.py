"""Distillation on unlabelled images (docs/design.md §11): the teacher labels them, the student learns
them from the KL term alone, stage 1 and evaluation never see them; and a mixed labelled /
unlabelled pipeline runs end to end through ``dvc repro``."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import make_tiny_dataset

from pipeline.core.bins import BinGrid
from pipeline.core.config import default_config
from pipeline.core.views import View, fit_view, views_array
from pipeline.data.datasets import PoseDataset
from pipeline.manifest.rows import RowQuery, split_rows
from pipeline.manifest.schema import read_boxes
from pipeline.model.losses import student_loss
from pipeline.teacher import labelstore
from pipeline.teacher.job import TeacherLabelsConfig, run_teacher_labels
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.training.outputs import RunPaths
from pipeline.training.stage2 import StudentConfig, train_student
from pipeline.training.targets import StoreTargets
from tests.helpers.params import full_params
from tests.helpers.teacher import make_teacher_checkpoint

N_TRAIN, N_UNL, N_TEST = 20, 8, 6
PARAMS = dict(p=2, s=2, views=3, view_seed=1, shard_rows=8, chunk_rows=4, batch_size=4, chunk=64,
              loader_workers=0, threads=1, device="cpu")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("unlabelled")
    boxes = make_tiny_dataset(root, n_train=N_TRAIN, n_test=N_TEST, size=48, seed=6, unlabelled=N_UNL)
    ck = make_teacher_checkpoint(root / "teacher.pt", size=32)
    store = root / "labels.zarr"
    torch.set_num_threads(1)
    run_teacher_labels(default_config(TeacherLabelsConfig, "teacher_labels", **PARAMS), str(ck), str(boxes), str(store))
    return dict(root=root, boxes=boxes, ck=ck, store=store)


def test_fit_view_keeps_the_rotation_of_an_unlabelled_row() -> None:
    v = View(flip=True, angle=12.0)
    assert fit_view(v, (math.nan, math.nan, math.nan)) == v
    assert fit_view(v, (0.0, 95.0, 0.0)) == View(flip=True, angle=0.0)  # a label is kept in range


def test_datasets_leave_unlabelled_rows_out_unless_asked(mixed: dict) -> None:
    df = read_boxes(mixed["boxes"])
    stage1 = PoseDataset(df, "train", 32, train=True)
    assert len(stage1) == N_TRAIN - N_UNL and stage1.unlabelled_left_out == N_UNL and stage1.labelled.all()
    student = PoseDataset(df, RowQuery("train", unlabelled=True), 32, train=True)
    assert len(student) == N_TRAIN and int((~student.labelled).sum()) == N_UNL
    item = student[N_TRAIN - 1]
    assert not bool(item["labelled"]) and torch.isnan(item["target"]).all()
    assert bool(student[0]["labelled"]) and torch.isfinite(student[0]["target"]).all()
    with pytest.raises(ValueError, match="all unlabelled"):
        PoseDataset(df[df["split"] == "train"].assign(labelled=False), "train", 32, train=False)


def test_teacher_store_holds_unlabelled_rows_with_their_views(mixed: dict) -> None:
    df = read_boxes(mixed["boxes"])
    rows = split_rows(df, "train")
    assert len(rows) == N_TRAIN and (~df["labelled"].to_numpy()[rows]).sum() == N_UNL
    path = str(mixed["store"])
    ids = list(load_teacher_labels(path).sample_ids)
    assert ids == df["sample_id"].to_numpy()[rows].tolist()
    attrs = dict(labelstore.open_store(path).attrs)
    assert (attrs["manifest"]["labelled"], attrs["manifest"]["unlabelled"]) == (N_TRAIN - N_UNL, N_UNL)
    views = load_teacher_labels(path).views
    unl = np.flatnonzero(~df["labelled"].to_numpy()[rows])
    # an unlabelled row keeps every drawn view (no label to keep in range)
    np.testing.assert_array_equal(views[unl], views_array([ids[i] for i in unl], 3, 1)[:, :, :])
    assert (np.abs(views[unl, 1:, 1]) > 0).all()
    probs = load_teacher_labels(path).probs()[unl].astype(np.float64)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(-1), 1.0, atol=2e-2)


def test_student_loss_of_an_unlabelled_row_has_no_cross_entropy() -> None:
    torch.manual_seed(0)
    grid = BinGrid(1)
    logits = torch.randn(3, 3, grid.count, requires_grad=True)
    teacher = torch.softmax(torch.randn(3, 3, grid.count) * 3, -1)
    target = torch.tensor([[10.0, -20.0, 5.0], [0.0, 40.0, -3.0], [math.nan] * 3])
    labelled = torch.tensor([True, True, False])
    loss, parts = student_loss(logits, target, teacher, grid, ce_weight=0.5, kd_weight=1.0, labelled=labelled)
    # by hand: CE summed over the labelled rows / B, KL batch-mean over all rows
    cls = grid.classify(target[:2])
    ce = sum(F.cross_entropy(logits[:2, a], cls[:, a], reduction="sum") for a in range(3)) / 3
    kl = sum(F.kl_div(F.log_softmax(logits[:, a], -1), teacher[:, a], reduction="batchmean") for a in range(3))
    torch.testing.assert_close(loss, (0.5 * ce + kl) / 2)
    torch.testing.assert_close(parts["ce"], ce.detach())
    # the unlabelled row's gradient is that of the KL term alone
    (g,) = torch.autograd.grad(loss, logits)
    kl_only, _ = student_loss(logits, target.nan_to_num(0.0), teacher, grid, ce_weight=0.0, kd_weight=1.0)
    (g_kl,) = torch.autograd.grad(kl_only, logits)
    torch.testing.assert_close(g[2], g_kl[2])
    assert not torch.allclose(g[0], g_kl[0])
    # whatever target the unlabelled row carries, the loss is the same
    other = target.clone()
    other[2] = torch.tensor([50.0, 50.0, 50.0])
    torch.testing.assert_close(student_loss(logits, other, teacher, grid, 0.5, 1.0, labelled=labelled)[0], loss)
    # every row labelled: exactly eq. 7 without a mask
    all_l = torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(student_loss(logits, other, teacher, grid, 0.5, 1.0, labelled=all_l)[0],
                               student_loss(logits, other, teacher, grid, 0.5, 1.0)[0])


def test_student_trains_on_unlabelled_rows_and_counts_them(mixed: dict, tmp_path: Path) -> None:
    cfg = default_config(StudentConfig, "train_student", batch_size=8, epochs=1, workers=0, device="cpu", photometric=False)
    res = train_student(cfg, StoreTargets(str(mixed["store"])), mixed["boxes"], RunPaths(tmp_path / "s.pt", tmp_path / "m.json"),
                        progress=False)
    assert math.isfinite(res["final"]["loss"]) and math.isfinite(res["final"]["mae_mean"])
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["rows"] == {"labelled": N_TRAIN - N_UNL, "unlabelled": N_UNL, "unlabelled_left_out": 0}
    # the no-KD control has nothing to learn from an unlabelled row: it leaves them out
    cfg0 = default_config(StudentConfig, "train_student", batch_size=8, epochs=1, workers=0, device="cpu", photometric=False, kd_weight=0.0)
    train_student(cfg0, StoreTargets(str(mixed["store"])), mixed["boxes"], RunPaths(tmp_path / "s0.pt", tmp_path / "m0.json"),
                  progress=False)
    m0 = json.loads((tmp_path / "m0.json").read_text())
    assert m0["rows"] == {"labelled": N_TRAIN - N_UNL, "unlabelled": 0, "unlabelled_left_out": N_UNL}


# --------------------------------------------------------------------------- dvc repro, end to end

DVC_YAML = """\
stages:
  index:
    cmd: hpekd index --out data/manifest.parquet --summary metrics/index.json --no-progress
    deps: [mine]
    params: [index]
    outs: [data/manifest.parquet]
    metrics: [{metrics/index.json: {cache: false}}]
  relabel:
    cmd: hpekd relabel --manifest data/manifest.parquet --out data/boxes.parquet --summary metrics/relabel.json --no-cache --no-progress
    deps: [data/manifest.parquet, mine]
    params: [relabel]
    outs: [data/boxes.parquet]
    metrics: [{metrics/relabel.json: {cache: false}}]
  train_teacher:
    cmd: hpekd train-teacher --boxes data/boxes.parquet --out models/teacher.pt --metrics metrics/train_teacher.json --no-progress
    deps: [data/boxes.parquet, mine]
    params: [train_teacher]
    outs: [models/teacher.pt]
    metrics: [{metrics/train_teacher.json: {cache: false}}]
  teacher_labels:
    cmd: hpekd teacher-labels --model models/teacher.pt --boxes data/boxes.parquet --out labels/teacher.zarr
    deps: [models/teacher.pt, data/boxes.parquet]
    params: [teacher_labels]
    outs: [labels/teacher.zarr]
  train_student:
    cmd: hpekd train-student --labels labels/teacher.zarr --boxes data/boxes.parquet --backbone resnet18
      --out models/student.pt --metrics metrics/train_student.json --no-progress
    deps: [labels/teacher.zarr, data/boxes.parquet]
    params: [train_student]
    outs: [models/student.pt]
    metrics: [{metrics/train_student.json: {cache: false}}]
  evaluate_student:
    cmd: hpekd evaluate --model models/student.pt --boxes data/boxes.parquet --metrics metrics/eval_student.json
    deps: [models/student.pt, data/boxes.parquet]
    params: [evaluate]
    metrics: [{metrics/eval_student.json: {cache: false}}]
"""


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_mixed_labelled_unlabelled_pipeline_through_dvc_repro(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    boxes = make_tiny_dataset(repo / "src", n_train=24, n_test=8, size=48, seed=7)
    # the user's own data: a CSV table, angle cells empty for a third of the training images
    df = pd.read_parquet(boxes)
    table = pd.DataFrame({"image": df["image_path"], "pitch": df["pitch"], "yaw": df["yaw"], "roll": df["roll"],
                          "x1": df["x1"], "y1": df["y1"], "x2": df["x2"], "y2": df["y2"], "split": df["split"]})
    unl = (df["split"] == "train").to_numpy() & (np.arange(len(df)) % 3 == 0)
    table.loc[unl, ["pitch", "yaw", "roll"]] = np.nan
    (repo / "src" / "images").rename(repo / "mine")
    shutil.rmtree(repo / "src")
    table.to_csv(repo / "mine" / "faces.csv", index=False)
    params = {
        "index": {"check_images": True, "on_error": "raise", "workers": 1, "datasets": [
            {"name": "mine", "format": "table", "root": "mine", "table": "mine/faces.csv"}]},
        "relabel": {"source": "table", "workers": 1},
        "train_teacher": {"backbone": "resnet18", "input_size": 32, "batch_size": 8, "epochs": 1, "workers": 0,
                          "device": "cpu", "photometric": False},
        "teacher_labels": {"p": 2, "s": 2, "views": 2, "shard_rows": 16, "chunk_rows": 8, "batch_size": 8,
                           "workers": 0, "loader_workers": 0, "device": "cpu"},
        "evaluate": {"batch_size": 16, "workers": 0, "device": "cpu"},
        "train_student": {"batch_size": 8, "epochs": 1, "workers": 0, "device": "cpu", "photometric": False},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(full_params(params), sort_keys=False))  # complete: the default + these
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], repo)
    _run([sys.executable, "-m", "dvc", "repro"], repo)
    n_unl = int(unl.sum())
    n_lab = int((df["split"] == "train").sum()) - n_unl
    index = json.loads((repo / "metrics" / "index.json").read_text())
    assert (index["labelled"], index["unlabelled"]) == (n_lab + 8, n_unl)
    teacher = json.loads((repo / "metrics" / "train_teacher.json").read_text())
    assert teacher["rows"] == {"labelled": n_lab, "unlabelled_left_out": n_unl}
    attrs = json.loads((repo / "labels" / "teacher.zarr" / "zarr.json").read_text())["attributes"]
    assert (attrs["manifest"]["labelled"], attrs["manifest"]["unlabelled"]) == (n_lab, n_unl)
    student = json.loads((repo / "metrics" / "train_student.json").read_text())
    assert student["rows"] == {"labelled": n_lab, "unlabelled": n_unl, "unlabelled_left_out": 0}
    ev = json.loads((repo / "metrics" / "eval_student.json").read_text())
    assert ev["all"]["n"] == 8  # the test rows only, all labelled
    out = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert "Running stage" not in out  # a second repro is a no-op
