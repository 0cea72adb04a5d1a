"""Stage 2: eq. 7 as used by the student, view replay, provenance refusal, training, CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TEST_SEED, make_tiny_dataset

from pipeline.core.bins import BinGrid
from pipeline.core.config import config_from_mapping, default_config, default_section
from pipeline.core.images import read_image
from pipeline.data.datasets import PoseDataset
from pipeline.data.loader import make_loader
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.teacher import labelread, labelstore
from pipeline.teacher.job import ZDataset
from pipeline.teacher.labelread import check_memory, load_teacher_labels
from pipeline.teacher.provenance import Requirements
from pipeline.training.engine import evaluate
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import Runtime
from pipeline.training.stage2 import StudentConfig, student_dataset, student_fns, teacher_input, train_student
from pipeline.training.targets import StoreTargets, TeacherTable, ViewReplay, student_bins
from stages.train_student import cli
from tests.helpers.params import full_params, write_params
from tests.helpers.student import make_oracle_store
from tests.helpers.teacher import make_teacher_checkpoint

SIZE = 48


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("student")
    boxes = make_tiny_dataset(root, n_train=32, n_test=12, size=SIZE, seed=3)
    store = make_oracle_store(boxes, root / "labels.zarr", size=SIZE, n_views=3)

    return boxes, store


# ----------------------------------------------------------------------------- eq. 7


def test_student_loss_eq7_by_hand(data: tuple[Path, Path]) -> None:
    """The student's loss_fn = (0.05·Σ CE(gt) + Σ KL(teacher ‖ out)) / 2 with the replayed view's target."""
    boxes, store = data
    labels = load_teacher_labels(store)
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE)
    table = TeacherTable(labels, len(read_boxes(boxes)))
    loss_fn, predict_fn = student_fns(cfg.spec(), lambda dev, b: table(b["index"], b["view_id"], dev), cfg.ce_weight)
    grid = BinGrid(1)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, grid.count, generator=g)
    rows = torch.tensor([int(labels.rows[1]), int(labels.rows[4])])
    views = torch.tensor([2, 0])
    target = torch.tensor([[10.2, -33.7, 5.5], [-98.9, 99.0, 0.0]])
    loss, parts = loss_fn({"bin1": logits}, {"index": rows, "view_id": views, "target": target})
    # by hand, in float64
    teacher = labels.targets(np.array([1, 4]), np.array([2, 0])).astype(np.float64)  # [2, 3, Q]
    lg = logits.double().numpy()
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ce = kl = 0.0
    for a in range(3):
        for b in range(2):
            cls = int(math.floor(target[b, a].item() + 99))  # bin-1 grid starts at -99
            cls = min(max(cls, 0), 197)
            ce += -logp[b, a, cls] / 2
            t = teacher[b, a]
            nz = t > 0
            kl += float((t[nz] * (np.log(t[nz]) - logp[b, a][nz])).sum()) / 2
    assert float(parts["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(parts["kl"]) == pytest.approx(kl, rel=1e-4)
    assert float(loss) == pytest.approx((0.05 * ce + kl) / 2, rel=1e-4)
    # prediction = eq. 2 on the bin-1 head
    assert torch.allclose(predict_fn({"bin1": logits}), grid.decode(logits))


# ----------------------------------------------------------------------------- view replay


def _dataset(store: Path, boxes: Path, cfg: StudentConfig):
    """The student's training set on the store, as train_student builds it."""
    targets, df = StoreTargets(str(store)), read_boxes(boxes)
    plan = targets.plan(df, boxes, Requirements(student_bins(cfg.spec()), cfg.size), cfg.seed)
    return student_dataset(df, plan, cfg, targets)


def test_view_replay_equals_teacher_view(data: tuple[Path, Path]) -> None:
    """Before photometric augmentation, the student's image for view k is the teacher's view k:
    the center crop of the region Z the teacher job built, and its target is View.pose(gt)."""
    boxes, store = data
    df = read_boxes(boxes)
    labels = load_teacher_labels(store)
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE, photometric=False)
    ds = _dataset(store, boxes, cfg)
    p = 4
    paths = [str(Path(r) / ip) for r, ip in zip(df["root"], df["image_path"])]
    zset = ZDataset([paths[r] for r in labels.rows], df[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[labels.rows],
                    labels.views, (SIZE, SIZE), p)
    seen = set()
    for epoch in range(4):
        for i in range(0, len(ds), 5):
            item = ds[(epoch, i)]
            row, k = int(item["index"]), int(item["view_id"])
            pos = int(np.flatnonzero(labels.rows == row)[0])
            assert 0 <= k < labels.n_views
            seen.add(k)
            z = zset[pos][k].numpy()  # the teacher job's region Z of view k
            np.testing.assert_array_equal(item["image"].numpy().transpose(1, 2, 0), z[p : p + SIZE, p : p + SIZE])
            view = labels.view(pos, k)
            np.testing.assert_array_equal(
                teacher_input(read_image(paths[row]), df.loc[row, ["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
                              (SIZE, SIZE), view, p),
                z[p : p + SIZE, p : p + SIZE],
            )
            assert (bool(item["flip"]), float(item["angle"])) == (view.flip, pytest.approx(view.angle))
            gt = df.loc[row, ["pitch", "yaw", "roll"]].to_numpy(np.float64)
            np.testing.assert_allclose(item["target"].numpy(), view.pose(*gt), atol=1e-4)
    assert seen == {0, 1, 2}  # every stored view gets replayed


def test_store_is_opened_once_and_indexed_once(data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """load_teacher_labels opens the store once; the view replay and the soft-target lookup
    share one inverse index (boxes row -> store row) built on TeacherLabels."""
    boxes, store = data
    opened = []
    monkeypatch.setattr(labelread, "open_store", lambda *a, **k: opened.append(a) or labelstore.open_store(*a, **k))
    labels = labelread.load_teacher_labels(store)
    assert len(opened) == 1
    n = len(read_boxes(boxes))
    replay, table = ViewReplay(labels, n), TeacherTable(labels, n)
    assert replay.pos is labels.positions(n) and table.pos.data_ptr() == replay.pos.ctypes.data
    np.testing.assert_array_equal(replay.pos[labels.rows], np.arange(len(labels.rows)))
    assert (np.delete(replay.pos, labels.rows) == -1).all()


def test_view_choice_is_seeded(data: tuple[Path, Path]) -> None:
    boxes, store = data
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE)
    a = _dataset(store, boxes, cfg)
    b = _dataset(store, boxes, cfg)
    va = [int(a[(1, i)]["view_id"]) for i in range(len(a))]
    assert va == [int(b[(1, i)]["view_id"]) for i in range(len(b))]
    assert va != [int(a[(2, i)]["view_id"]) for i in range(len(a))]  # a fresh draw per epoch
    # photometric augmentation changes pixels, not the view or the target
    aug = a[(1, 0)]
    plain = _dataset(store, boxes, default_config(StudentConfig, "train_student", input_size=SIZE, photometric=False))[(1, 0)]
    assert int(aug["view_id"]) == int(plain["view_id"])
    assert torch.equal(aug["target"], plain["target"])


# ----------------------------------------------------------------------------- provenance


def _check(store: Path, boxes: Path, size: int = SIZE, teacher: Path | None = None) -> None:
    cfg = default_config(StudentConfig, "train_student", input_size=size)
    StoreTargets(str(store), teacher=teacher).plan(read_boxes(boxes), boxes,
                                                   Requirements(student_bins(cfg.spec()), cfg.size), 0)


def test_matching_store_accepted(data: tuple[Path, Path]) -> None:
    boxes, store = data
    _check(store, boxes)


def test_store_for_another_manifest_refused(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = data
    other = make_tiny_dataset(tmp_path / "other", n_train=32, n_test=12, size=SIZE, seed=4)
    with pytest.raises(ValueError, match=r"manifest\.sha256 differs"):
        _check(store, other)


def test_store_with_other_sample_ids_refused(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, _ = data
    df = read_boxes(boxes)
    ids = df.loc[df["split"] == "train", "sample_id"].astype(str).tolist()
    ids[5], ids[6] = ids[6], ids[5]
    store = make_oracle_store(boxes, tmp_path / "swapped.zarr", size=SIZE, sample_ids=ids)
    with pytest.raises(ValueError, match=r"sample_id differs .*row 5"):
        _check(store, boxes)


def test_store_for_other_bins_or_size_refused(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = data
    with pytest.raises(ValueError, match=r"input\.size differs \(store \[48, 48\], here \[64, 64\]\)"):
        _check(store, boxes, size=64)
    coarse = make_oracle_store(boxes, tmp_path / "bin2.zarr", size=SIZE, bin_size=2)
    with pytest.raises(ValueError, match=r"bins\.b differs"):
        _check(coarse, boxes)


def test_store_from_another_teacher_refused(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = data
    teacher = make_teacher_checkpoint(tmp_path / "teacher.pt", size=SIZE)  # a real checkpoint, not the store's
    with pytest.raises(ValueError, match=r"teacher\.sha256 differs"):
        _check(store, boxes, teacher=teacher)


def test_incomplete_store_refused(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, _ = data
    store = make_oracle_store(boxes, tmp_path / "partial.zarr", size=SIZE)
    labelstore.open_store(str(store), "r+")["done"][1] = 0
    with pytest.raises(ValueError, match="incomplete"):
        load_teacher_labels(store)


def test_memory_limit(data: tuple[Path, Path]) -> None:
    _, store = data
    with pytest.raises(ValueError, match="max_label_memory_gb"):
        load_teacher_labels(store, max_gb=1e-6)
    with pytest.raises(ValueError, match=r"only 0\.0 GiB are available"):
        check_memory(10 << 20, 16.0, "x.zarr", available=1 << 20)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        default_config(StudentConfig, "train_student", backbone="vgg16")
    with pytest.raises(ValueError, match="input_size"):
        default_config(StudentConfig, "train_student", input_size=(8, 8))
    # the one input_size rule of both stages: never a bool; null only here (= the store's size)
    assert default_config(StudentConfig, "train_student", input_size=None).size is None
    assert default_config(StudentConfig, "train_student", input_size=[48, 40]).size == (48, 40)
    with pytest.raises(ValueError, match=r"input_size = True is bool; expected int or \[int, int\] or null"):
        config_from_mapping(StudentConfig, {"input_size": True}, "train_student")
    for bad in (True, (True, 32), (64, False)):
        with pytest.raises(ValueError, match=rf"input_size {re.escape(repr(bad))} must be null, an int or \[h, w\]"):
            StudentConfig(**{**default_section("train_student"), "input_size": bad})  # the record's own check
    spec = default_config(StudentConfig, "train_student", backbone="resnet34").spec()
    assert (spec.backbone, spec.bin_sizes, spec.regression) == ("resnet34", (1,), False)
    # the values are configs/default.yaml's: the record has no defaults of its own
    assert default_config(StudentConfig, "train_student").ce_weight == default_section("train_student")["ce_weight"]
    with pytest.raises(TypeError, match="missing"):
        StudentConfig(backbone="resnet18")  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- training


def _test_mae(model: torch.nn.Module, boxes: Path) -> float:
    ds = PoseDataset(boxes, "test", SIZE, train=False)
    loader, _ = make_loader(ds, 16, train=False)
    grid = BinGrid(1)
    return evaluate(model, loader, lambda o: grid.decode(o["bin1"]), Runtime(torch.device("cpu")))["mae_mean"]


@pytest.mark.slow
def test_short_training_lowers_mae_and_cli_resume(tmp_path: Path) -> None:
    """A student trained on the oracle teacher's labels at least halves an untrained network's test MAE; the
    CLI writes its checkpoint, metrics and plots, and --resume on a finished run trains nothing.
    Measured after/before (seeds 0/1/2, pinned | native): 0.265 0.345 0.335 | 0.275 0.311 0.299; threshold < 0.5
    (seeds 0-7 both ways: 0.25-0.37). On the module's fixture (32 train / 12 test faces, 3 epochs) the MAE fell by
    0.8-3.7°, and by 0.77° (< the 1° required) with native numerics and seed 6: its own data here, 64 × 6 epochs
    ending where the curve flattens."""
    epochs = 6
    boxes = make_tiny_dataset(tmp_path / "data", n_train=64, n_test=32, size=SIZE, seed=3 + TEST_SEED)
    store = make_oracle_store(boxes, tmp_path / "labels.zarr", size=SIZE, n_views=3)
    params = tmp_path / "params.yaml"
    values = full_params({"train_student": {"input_size": None, "batch_size": 8, "epochs": epochs, "lr": 0.001,
                                            "workers": 0, "device": "cpu", "photometric": False,
                                            "seed": TEST_SEED}})
    values["train_student"]["backbone"] = "resnet34"  # --backbone (one stage per student) wins over the file
    params.write_text(yaml.safe_dump(values))
    out, metrics, plots = tmp_path / "student.pt", tmp_path / "m.json", tmp_path / "p.csv"
    args = ["--labels", str(store), "--boxes", str(boxes), "--backbone", "resnet18", "--out", str(out),
            "--metrics", str(metrics), "--plots", str(plots), "--params", str(params), "--no-progress"]
    torch.manual_seed(TEST_SEED)
    from pipeline.model.network import HeadPoseNet

    before = _test_mae(HeadPoseNet(default_config(StudentConfig, "train_student").spec()), boxes)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    state = load_checkpoint(out)
    assert state["kind"] == "student" and state["epoch"] == epochs and state["input_size"] == [SIZE, SIZE]
    assert state["model_spec"]["backbone"] == "resnet18" and state["model_spec"]["bin_sizes"] == [1]
    assert state["labels"]["provenance"]["bins"]["Q"] == 198
    model, _ = model_from_checkpoint(out)
    after = _test_mae(model, boxes)
    m = json.loads(metrics.read_text())
    assert m["epochs"] == epochs and m["final"]["mae_mean"] == pytest.approx(after, rel=1e-4)
    print(f"\nstudent test MAE: untrained {before:.2f}, after {epochs} epochs {after:.2f}; after/before {after / before:.3f}")
    assert after < 0.5 * before, (before, after)
    assert len(plots.read_text().splitlines()) == epochs + 1
    # --resume on a finished run trains nothing and keeps the checkpoint (the engine's resume
    # itself is tested with stage 1)
    mtime = out.stat().st_mtime_ns
    res = CliRunner().invoke(cli, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out)["epoch"] == epochs and out.stat().st_mtime_ns == mtime


def test_cli_errors(data: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = data
    params = write_params(tmp_path / "params.yaml", {"train_student": {"input_size": 64, "epochs": 1}})
    base = ["--labels", str(store), "--boxes", str(boxes), "--out", str(tmp_path / "s.pt"), "--params", str(params)]
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 1 and "input.size differs" in res.output
    res = CliRunner().invoke(cli, base[:1] + [str(tmp_path / "none.zarr")] + base[2:])
    assert res.exit_code == 1 and "not found" in res.output
    params.write_text("train_student:\n  lr_typo: 1\n")  # as written: an unknown key is named before missing ones
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 1 and "lr_typo" in res.output


def test_train_student_function_small(data: tuple[Path, Path], tmp_path: Path) -> None:
    """One epoch through the library entry point, photometric on, DVC metrics written."""
    boxes, store = data
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE, batch_size=16, epochs=1, workers=0, device="cpu")
    res = train_student(cfg, StoreTargets(str(store)), boxes, RunPaths(tmp_path / "s.pt", tmp_path / "m.json"), progress=False)
    assert set(res["final"]) >= {"loss", "ce", "kl", "mae_mean"}
    assert math.isfinite(res["final"]["loss"])
