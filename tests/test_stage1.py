"""Stage 1 end to end: training lowers test MAE below the mean-pose baseline, exact resume,
`hpekd train-teacher` / `hpekd evaluate` and their bad-input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TEST_SEED, make_tiny_dataset

from pipeline.core.config import config_from_mapping, default_config, default_section
from pipeline.data.datasets import PoseDataset
from pipeline.evaluation.errors import read_errors
from pipeline.evaluation.evaluate import EvalConfig, EvalOutputs, evaluate_checkpoint
from pipeline.model.checkpoint import load_checkpoint, save_checkpoint
from pipeline.model.network import HeadPoseNet, ModelSpec
from pipeline.training.outputs import RunPaths
from pipeline.training.stage1 import Stage1Config, baseline_mae, train_teacher
from stages.cli import main
from tests.helpers.params import write_params

FAST = dict(backbone="resnet18", input_size=32, batch_size=16, workers=0, lr=3e-3)


def _params(tmp_path: Path, name: str = "params.yaml", **section) -> Path:
    """Complete params: the default with ``section``'s train_teacher values and a small evaluate."""
    return write_params(tmp_path / name, {"train_teacher": section,
                                          "evaluate": {"batch_size": 32, "workers": 0, "grid_faces": 6, "grid_size": 64}})


@pytest.mark.slow
def test_training_beats_mean_baseline_and_evaluate_cli(tmp_path: Path) -> None:
    """Training beats predicting the training mean: the final test MAE is < 0.75 × the baseline's.
    Measured final/baseline (seeds 0/1/2, pinned | native): 0.482 0.343 0.418 | 0.338 0.281 0.298; threshold < 0.75
    (seeds 0-7 both ways: 0.28-0.49). With 8 epochs it was 0.42-0.60 here and 0.93 on an AMD EPYC (AVX-512):
    the run ended on the steep part of its curve, where a shift of one epoch moves the ratio by 0.1-0.3."""
    epochs = 16
    boxes = make_tiny_dataset(tmp_path / "data", n_train=96, n_test=32, size=64, seed=5 + TEST_SEED)
    train = PoseDataset(boxes, "train", 32, train=False)
    test = PoseDataset(boxes, "test", 32, train=False)
    base = baseline_mae(train.angles, test.angles)
    params = _params(tmp_path, **FAST, epochs=epochs, photometric=False, max_angle=0.0, seed=TEST_SEED)
    out, metrics, plots = tmp_path / "teacher.pt", tmp_path / "m.json", tmp_path / "p.csv"
    r = CliRunner().invoke(main, ["train-teacher", "--boxes", str(boxes), "--out", str(out), "--metrics", str(metrics),
                                  "--plots", str(plots), "--params", str(params), "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads(metrics.read_text())
    rows = plots.read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == epochs + 1 and "mae_mean" in rows[0] and "ce_bin1" in rows[0]
    before = json.loads(json.dumps(m))["final"]
    print(f"\nbaseline (train mean) test MAE {base['mae_mean']:.2f} (yaw {base['mae_yaw']:.2f}); "
          f"after {m['epochs']} epochs {before['mae_mean']:.2f} (yaw {before['mae_yaw']:.2f}); "
          f"best {m['best']['mae_mean']:.2f}; final/baseline {before['mae_mean'] / base['mae_mean']:.3f}")
    assert m["epochs"] == epochs and m["final"]["mae_mean"] < 0.75 * base["mae_mean"]
    state = load_checkpoint(out)
    assert state["kind"] == "stage1" and state["epoch"] == epochs and state["input_size"] == [32, 32]
    assert state["model_spec"]["bin_sizes"] == [1, 2, 3, 4] and state["config"]["backbone"] == "resnet18"

    ev, grid = tmp_path / "eval.json", tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--boxes", str(boxes), "--metrics", str(ev),
                                  "--grid", str(grid), "--params", str(params)])
    assert r.exit_code == 0, r.output
    e = json.loads(ev.read_text())
    assert set(e["datasets"]) == {"tiny_test"} and e["all"]["n"] == 32
    assert e["all"]["mae_mean"] == pytest.approx(m["final"]["mae_mean"], abs=1e-3)  # same numbers as the engine
    from pipeline.core.images import read_image

    assert read_image(grid).shape[0] > 64
    r = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--boxes", str(boxes), "--metrics", str(ev),
                                  "--dataset", "nope", "--params", str(params)])
    assert r.exit_code == 1 and "nope" in r.output


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    tiny_boxes = make_tiny_dataset(tmp_path / "data", n_train=20, n_test=4, size=48, seed=2)
    cfg2 = default_config(Stage1Config, "train_teacher", **{**FAST, "batch_size": 8}, epochs=2, seed=7, scheduler="cosine", bin_sizes=(1, 3))
    straight = tmp_path / "straight.pt"
    train_teacher(cfg2, tiny_boxes, RunPaths(straight), progress=False)
    part = tmp_path / "part.pt"
    train_teacher(cfg2, tiny_boxes, RunPaths(part), progress=False, stop_after=1)  # an interrupted run
    assert load_checkpoint(part)["epoch"] == 1
    # tamper with the global RNGs: resume must restore them from the checkpoint
    torch.manual_seed(1234)
    np.random.seed(99)
    m, p = tmp_path / "m.json", tmp_path / "p.csv"
    res = train_teacher(cfg2, tiny_boxes, RunPaths(part, m, p), resume=True, progress=False)
    assert res["final"]["epoch"] == 2
    a, b = _state(straight), _state(part)
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff == 0.0, f"resumed weights differ by {diff}"
    assert load_checkpoint(part)["optimizer"]["state"].keys() == load_checkpoint(straight)["optimizer"]["state"].keys()
    assert len(p.read_text().splitlines()) == 3  # both epochs in the plot file after resume


def test_stage1_config_errors() -> None:
    DEFAULT1 = default_section("train_teacher")  # noqa: N806 - a constant of this test
    where = "params.yaml section 'train_teacher'"
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'"):
        config_from_mapping(Stage1Config, {**DEFAULT1, "backbone": "resnet19"}, where)
    for bad in (0, -2, 0.1, 150, 400):
        with pytest.raises(ValueError, match=f"bin size {bad!r}"):
            config_from_mapping(Stage1Config, {**DEFAULT1, "bin_sizes": [1, bad]}, where)
    with pytest.raises(ValueError, match="duplicates"):
        config_from_mapping(Stage1Config, {**DEFAULT1, "bin_sizes": [1, 1]}, where)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bacbone'\]"):
        config_from_mapping(Stage1Config, {"bacbone": "resnet18"}, where)
    with pytest.raises(ValueError, match="scheduler 'step'"):
        config_from_mapping(Stage1Config, {**DEFAULT1, "scheduler": "step"}, where)
    with pytest.raises(ValueError, match="input_size"):
        config_from_mapping(Stage1Config, {**DEFAULT1, "input_size": 4}, where)
    # the one input_size rule of both stages: never a bool, and (unlike the student) never null
    for bad in (True, None):
        with pytest.raises(ValueError, match=rf"input_size = {bad} is \w+; expected int or \[int, int\]$"):
            config_from_mapping(Stage1Config, {**DEFAULT1, "input_size": bad}, where)
    for bad in (True, None, (True, 32)):
        with pytest.raises(ValueError, match=rf"input_size {re.escape(repr(bad))} must be an int or \[h, w\]"):
            Stage1Config(**{**DEFAULT1, "input_size": bad})  # the record's own check, past the type check
    cfg = config_from_mapping(Stage1Config, {**DEFAULT1, "bin_sizes": [1, 2], "input_size": [48, 40]}, where)
    assert cfg.spec().bin_sizes == (1, 2) and cfg.size == (48, 40)


def test_cli_bad_inputs(tiny_boxes: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "t.pt"

    def run(params: Path, *extra: str, boxes: Path = tiny_boxes):
        return runner.invoke(main, ["train-teacher", "--boxes", str(boxes), "--out", str(out), "--metrics",
                                    str(tmp_path / "m.json"), "--plots", str(tmp_path / "p.csv"),
                                    "--params", str(params), "--no-progress", *extra])

    r = run(_params(tmp_path, backbone="resnet19"))
    assert r.exit_code == 1 and "unknown backbone 'resnet19'" in r.output
    r = run(_params(tmp_path, bin_sizes=[1, 0.2]))
    assert r.exit_code == 1 and "bin size 0.2" in r.output
    import pandas as pd

    empty = tmp_path / "empty.parquet"
    pd.read_parquet(tiny_boxes).iloc[:0].to_parquet(empty)
    r = run(_params(tmp_path, **FAST, epochs=1), boxes=empty)
    assert r.exit_code == 1 and "no usable rows" in r.output and "empty.parquet" in r.output

    # checkpoints of another architecture: on --resume and as --weights
    other = HeadPoseNet(ModelSpec("resnet34", (1,), regression=False))
    save_checkpoint(out, {"kind": "stage1", "model_spec": other.spec.to_dict(), "model": other.state_dict(),
                          "optimizer": {}, "scheduler": None, "epoch": 1, "config": {}, "input_size": [32, 32]})
    r = run(_params(tmp_path, **FAST, epochs=2), "--resume")
    assert r.exit_code == 1 and "another architecture" in r.output and "resnet34" in r.output
    student = tmp_path / "student.pt"
    save_checkpoint(student, {"kind": "student", "model_spec": other.spec.to_dict(), "model": other.state_dict(),
                              "optimizer": {}, "scheduler": None, "epoch": 1, "config": {}, "input_size": [32, 32]})
    r = run(_params(tmp_path, **FAST, epochs=1, weights=str(out)))
    assert r.exit_code == 1 and "resnet34 checkpoint" in r.output and "resnet18" in r.output
    tv = tmp_path / "r34.pth"
    torch.save(other.trunk.state_dict(), tv)
    r = run(_params(tmp_path, **FAST, epochs=1, weights=str(tv)))
    assert r.exit_code == 1 and "do not fit backbone 'resnet18'" in r.output and "r34.pth" in r.output
    r = run(_params(tmp_path, **FAST, epochs=1, weights=str(tmp_path / "none.pth")))
    assert r.exit_code == 1 and "none.pth" in r.output
    out.unlink()
    import shutil

    shutil.copy(student, out)
    r = run(_params(tmp_path, **FAST, epochs=1), "--resume")
    assert r.exit_code == 1 and "'student' checkpoint" in r.output
    r = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "missing.pt"), "--boxes", str(tiny_boxes),
                             "--metrics", str(tmp_path / "e.json"), "--params", str(_params(tmp_path))])
    assert r.exit_code == 1 and "missing.pt" in r.output


def test_weights_from_matching_backbone_load(tiny_boxes: Path, tmp_path: Path) -> None:
    from pipeline.model.checkpoint import load_backbone_weights

    src = HeadPoseNet(ModelSpec("resnet18", (1,)))
    path = tmp_path / "r18.pth"
    torch.save({**src.trunk.state_dict(), "fc.weight": torch.zeros(3, 3)}, path)
    dst = HeadPoseNet(ModelSpec("resnet18", (1, 2)))
    load_backbone_weights(dst, path)
    assert torch.equal(dst.trunk.conv1.weight, src.trunk.conv1.weight)


def test_evaluate_reports_each_dataset(tiny_boxes: Path, tmp_path: Path) -> None:
    import pandas as pd

    df = pd.read_parquet(tiny_boxes)
    test = df["split"] == "test"
    df.loc[test & (df.index % 2 == 0), "dataset"] = "other_test"
    df.loc[df.index[-1], "roll"] = 150.0  # out of range: dropped and counted
    boxes = tmp_path / "boxes.parquet"
    df.to_parquet(boxes)
    model = HeadPoseNet(ModelSpec("resnet18", (1,), regression=False))
    ckpt = tmp_path / "s.pt"
    save_checkpoint(ckpt, {"kind": "student", "model_spec": model.spec.to_dict(), "model": model.state_dict(),
                           "optimizer": {}, "scheduler": None, "epoch": 1, "config": {}, "input_size": [32, 32]})
    res = evaluate_checkpoint(ckpt, boxes, "test", None, cfg=default_config(EvalConfig, "evaluate", workers=0, grid_faces=4, grid_size=48),
                              outputs=EvalOutputs(tmp_path / "e.json", tmp_path / "g.png", errors=tmp_path / "e.parquet"))
    err = read_errors(tmp_path / "e.parquet")
    assert len(err) == 15 and set(err["dataset"]) == {"tiny_test", "other_test"}, "one row per face within ±99°"
    np.testing.assert_allclose(err[["err_pitch", "err_yaw", "err_roll"]].to_numpy().mean(0),
                               [res["all"][f"mae_{a}"] for a in ("pitch", "yaw", "roll")], rtol=1e-4)
    assert set(res["datasets"]) == {"tiny_test", "other_test"}
    assert res["all"]["n"] == 15 and res["all"]["dropped"] == 1
    assert sum(d["n"] for d in res["datasets"].values()) == 15
    assert res["kind"] == "student" and (tmp_path / "g.png").is_file()


@pytest.mark.gpu
def test_cuda_bf16_channels_last_epoch(tiny_boxes: Path, tmp_path: Path) -> None:
    cfg = default_config(Stage1Config, "train_teacher", **{**FAST, "workers": 2}, epochs=1, device="cuda")
    res = train_teacher(cfg, tiny_boxes, RunPaths(tmp_path / "t.pt"), progress=False)
    assert np.isfinite(res["final"]["loss"]) and np.isfinite(res["final"]["mae_mean"])
    assert load_checkpoint(tmp_path / "t.pt")["model"]["trunk.conv1.weight"].device.type == "cpu"


def test_training_runtime_tears_down_only_the_group_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one runtime context manager of both stages: a DDP process group it created is destroyed on
    exit (also after an error); one that was there before (the caller's) is left alone."""
    import socket

    import torch.distributed as dist

    from pipeline.training import runtime

    def init_group() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)

    def fake_setup(device: str = "auto") -> runtime.Runtime:  # setup_runtime under torchrun, one process
        if not dist.is_initialized():
            init_group()
        return runtime.Runtime(torch.device("cpu"), 0, 2, 0)

    monkeypatch.setattr(runtime, "setup_runtime", fake_setup)
    with pytest.raises(RuntimeError, match="boom"), runtime.training_runtime("cpu") as rt:
        assert rt.distributed and dist.is_initialized()
        raise RuntimeError("boom")
    assert not dist.is_initialized()
    init_group()  # the caller's own group
    try:
        with runtime.training_runtime("cpu"):
            pass
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path: Path) -> None:
    import subprocess
    import sys

    boxes = make_tiny_dataset(tmp_path, n_train=16, n_test=4, size=48, seed=1)
    script = tmp_path / "run.py"
    script.write_text(
        "import torch\ntorch.set_num_threads(1)\n"
        "from pipeline.training.outputs import RunPaths\n"
        "from pipeline.training.stage1 import Stage1Config, train_teacher\n"
        "from pipeline.core.config import default_config\n"
        "cfg = default_config(Stage1Config, 'train_teacher', backbone='resnet18', input_size=32, batch_size=4, "
        "workers=0, epochs=1, device='cpu')\n"
        f"train_teacher(cfg, {str(boxes)!r}, RunPaths({str(tmp_path / 't.pt')!r}, {str(tmp_path / 'm.json')!r}), "
        "progress=False)\n"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                       cwd=root, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr[-2000:]
    state = load_checkpoint(tmp_path / "t.pt")
    assert state["epoch"] == 1 and json.loads((tmp_path / "m.json").read_text())["epochs"] == 1


def test_default_recipe_learns_all_three_angles(tmp_path: Path) -> None:
    """Guard for the default recipe: with the default's feature_norm + head_lr_mult the bin-1 head (the one
    that predicts and makes the teacher labels) learns pitch and roll, not only yaw; the old
    recipe (no neck, heads at lr) left roll almost constant on the same data and steps.
    Measured min default slope (seeds 0/1/2, pinned | native): 0.597 0.600 0.624 | 0.553 0.755 0.681; threshold > 0.4
    (was 0.5, 0.05 under the lowest); the old recipe's roll slope: 0.089 0.063 0.164 | 0.044 0.149 0.216; threshold
    < 0.3. Seeds 3-7 both ways: default 0.550-0.738, old roll 0.069-0.176; the two never come closer than 0.33."""
    from pipeline.evaluation.evaluate import EvalConfig, evaluate_checkpoint

    boxes = make_tiny_dataset(tmp_path, n_train=192, n_test=48, size=48, seed=1 + TEST_SEED)
    slopes = {}
    for name, fn, hl in (("default", True, 10.0), ("old", False, 1.0)):
        cfg = default_config(Stage1Config, "train_teacher", backbone="resnet18", input_size=32, batch_size=32, epochs=12, lr=1e-3, scheduler="cosine",
                           workers=0, device="cpu", photometric=False, max_angle=0.0, feature_norm=fn,
                           head_lr_mult=hl, eval_every=100, seed=TEST_SEED)
        train_teacher(cfg, boxes, RunPaths(tmp_path / f"{name}.pt"), progress=False)
        res = evaluate_checkpoint(tmp_path / f"{name}.pt", boxes, "test", None, default_config(EvalConfig, "evaluate", workers=0, device="cpu"))
        slopes[name] = [res["all"][f"slope_{a}"] for a in ("pitch", "yaw", "roll")]
        assert res["all"]["baseline_mae_mean"] > 0
    print(f"\nslopes (pitch, yaw, roll): default {[round(x, 3) for x in slopes['default']]}, "
          f"old {[round(x, 3) for x in slopes['old']]}; min default {min(slopes['default']):.3f}, "
          f"old roll {slopes['old'][2]:.3f}")
    assert min(slopes["default"]) > 0.4, slopes
    assert slopes["old"][2] < 0.3, slopes  # the control: this test fails on the old recipe
