"""The teacher-free sources of stage 2 (issue #31): the Gaussian soft label and no soft target at
all, both drawing the store's keyed views without a store, through the one student path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_dataset

from pipeline.core.bins import BinGrid
from pipeline.core.config import default_config
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_checkpoint
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.teacher.provenance import Requirements, Views
from pipeline.training.stage2 import StudentConfig, student_dataset
from pipeline.training.targets import GaussianTargets, NoTargets, StoreTargets, gaussian_targets, student_bins
from stages.train_student import cli
from tests.helpers.params import write_params
from tests.helpers.student import make_oracle_store

SIZE = 32
STUDENT = {"input_size": None, "batch_size": 8, "epochs": 1, "workers": 0, "device": "cpu", "photometric": False}
# the oracle store's views: 3 views, seed 0, flip 0.5, ±15°
TL = {"views": 3, "view_seed": 0, "flip_prob": 0.5, "max_angle": 15.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("soft")
    boxes = make_tiny_dataset(root, n_train=16, n_test=8, size=64, seed=5)
    return boxes, make_oracle_store(boxes, root / "labels.zarr", size=SIZE, n_views=3)


def test_gaussian_target_sums_to_one_and_peaks_at_the_label_bin() -> None:
    grid = BinGrid(1)
    angles = torch.tensor([[10.3, -45.4, 0.2], [98.7, -98.9, 33.5]])  # no angle on a bin edge (a tie)
    t = gaussian_targets(angles, grid, 3.0)
    assert t.shape == (2, 3, grid.count)
    torch.testing.assert_close(t.sum(-1), torch.ones(2, 3))
    assert (t.argmax(-1) == grid.classify(angles)).all()
    # the width is the one asked for: the mean and SD of the discretised Gaussian away from the edges
    c = torch.from_numpy(grid.centers).double()
    mean = (t[0, 1].double() * c).sum()
    sd = ((t[0, 1].double() * (c - mean) ** 2).sum()).sqrt()
    assert float(mean) == pytest.approx(-45.4, abs=0.01) and float(sd) == pytest.approx((9 + 1 / 12) ** 0.5, abs=0.01)
    with pytest.raises(ValueError, match=r"soft_label_sigma 0\.0 must be > 0 degrees"):
        gaussian_targets(angles, grid, 0.0)


def test_keyed_views_are_the_stores_views(data: tuple[Path, Path]) -> None:
    """The teacher-free students draw exactly the view the KD student replays from the store (same
    draw from the sample's generator, same keyed view), with no store."""
    boxes, store = data
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE, kd_weight=0.0, photometric=False)
    req = Requirements(student_bins(cfg.spec()), cfg.size)
    df = read_boxes(boxes)
    kd = StoreTargets(str(store))
    free = NoTargets(Views(0, 3, 0.5, 15.0), (SIZE, SIZE))
    a = student_dataset(df, kd.plan(df, boxes, req, 0), cfg, kd)
    b = student_dataset(df, free.plan(df, boxes, req, 0), cfg, free)
    labels = load_teacher_labels(store)
    assert len(a) == len(b)
    for epoch in (0, 3):
        for i in range(len(a)):
            x, y = a[(epoch, i)], b[(epoch, i)]
            assert int(x["view_id"]) == int(y["view_id"])
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["target"], y["target"])
    assert {int(b[(0, i)]["view_id"]) for i in range(len(b))} == {0, 1, 2}
    assert len(labels.rows) == len(b)  # every store row, none read from the store


def test_gaussian_student_trains_one_epoch_through_the_stage(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, _ = data
    params = write_params(tmp_path / "params.yaml", {"train_student": {**STUDENT, "soft_label_sigma": 2.5},
                                                    "teacher_labels": TL, "train_teacher": {"input_size": SIZE}})
    out, metrics = tmp_path / "soft.pt", tmp_path / "m.json"
    res = CliRunner().invoke(cli, ["--gaussian", "--boxes", str(boxes), "--out", str(out), "--metrics", str(metrics),
                                   "--params", str(params), "--no-progress"])
    assert res.exit_code == 0, res.output
    m = json.loads(metrics.read_text())
    assert m["teacher"] == {"mode": "gaussian", "sigma": 2.5, "views": 3, "network_passes": 0}
    final = json.loads(res.output.strip().splitlines()[-1])["final"]
    assert final["kl"] > 0 and m["rows"]["unlabelled"] == 0
    prov = load_checkpoint(out)["labels"]["provenance"]
    assert prov["target"] == {"kind": "gaussian", "sigma": 2.5} and prov["input"]["size"] == [SIZE, SIZE]
    assert prov.get("teacher") is None  # no teacher anywhere


def test_student_without_soft_targets_needs_no_store(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, _ = data
    params = write_params(tmp_path / "params.yaml", {"train_student": STUDENT, "teacher_labels": TL,
                                                    "train_teacher": {"input_size": SIZE}})
    out, metrics = tmp_path / "nokd.pt", tmp_path / "m.json"
    res = CliRunner().invoke(cli, ["--kd-weight", "0", "--boxes", str(boxes), "--out", str(out), "--metrics",
                                   str(metrics), "--params", str(params), "--no-progress"])
    assert res.exit_code == 0, res.output
    m = json.loads(metrics.read_text())
    final = json.loads(res.output.strip().splitlines()[-1])["final"]
    assert m["teacher"]["mode"] == "none" and final["kl"] == 0
    assert load_checkpoint(out)["labels"]["provenance"]["target"] == {"kind": "none"}


def test_bad_sources_refused_in_one_line(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = data
    params = write_params(tmp_path / "params.yaml", {"train_student": STUDENT, "teacher_labels": TL})
    base = ["--boxes", str(boxes), "--out", str(tmp_path / "s.pt"), "--params", str(params)]
    for extra, words in ((["--labels", str(store), "--gaussian"], "--labels and --gaussian are two soft-target sources"),
                         (["--labels", str(store), "--kd-weight", "0"], "--labels and --kd-weight 0 are two"),
                         (["--gaussian", "--kd-weight", "0"], "--gaussian and --kd-weight 0 are two"),
                         (["--gaussian", "--teacher", str(boxes)], "--teacher checks a label store's teacher")):
        res = CliRunner().invoke(cli, base + extra)
        assert res.exit_code != 0 and words in res.output and "Traceback" not in res.output, (extra, res.output)
    bad = write_params(tmp_path / "bad.yaml", {"train_student": {**STUDENT, "soft_label_sigma": -1.0}})
    res = CliRunner().invoke(cli, ["--gaussian", "--boxes", str(boxes), "--out", str(tmp_path / "s.pt"), "--params",
                                   str(bad)])
    assert res.exit_code == 1 and "soft_label_sigma -1.0 must be > 0 degrees" in res.output
    assert len(res.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"soft_label_sigma 0 must be > 0 degrees"):
        GaussianTargets(0, Views(0, 3, 0.5, 15.0), (SIZE, SIZE))
