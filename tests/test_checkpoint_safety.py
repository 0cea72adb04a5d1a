"""Loading a checkpoint runs no code (issue 34, docs/security.md).

A crafted checkpoint whose unpickling would write a marker file is passed to every command that
takes a model or weights: each refuses it in one line and the marker never appears. A malformed
checkpoint is refused naming the missing or wrong field, and ``hpekd checkpoint upgrade --trust``
turns an old-style (unsafe-only) checkpoint into one the safe loader reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.core.images import write_image
from pipeline.model.checkpoint import (
    UnsafeFile,
    checkpoint_state,
    load_backbone_weights,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from pipeline.model.network import HeadPoseNet, ModelSpec
from stages.cli import main
from tests.conftest import make_tiny_dataset
from tests.helpers.params import write_params
from tests.helpers.student import make_oracle_store
from tests.helpers.teacher import make_teacher_checkpoint

SIZE = 32


class _RunsCode:
    """Unpickling this calls ``exec`` on a line that writes ``marker``: what a hostile file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('pwned')",)


class _Opaque:
    """A picklable object with no plain-data form (for the upgrade's refusal)."""

    def __init__(self) -> None:
        self.x = 1


def _state(kind: str = "stage1", spec: ModelSpec | None = None, **extra: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    return checkpoint_state(kind, HeadPoseNet(spec or ModelSpec("resnet18")), (SIZE, SIZE), **extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("safety")
    boxes = make_tiny_dataset(root / "data", n_train=8, n_test=4, size=48, seed=2)
    marker = root / "marker.txt"
    evil = root / "evil.pt"
    torch.save(_state(x=_RunsCode(marker)), evil)
    good = make_teacher_checkpoint(root / "teacher.pt", size=SIZE)
    image = root / "face.png"
    write_image(image, np.full((48, 48, 3), 128, np.uint8))
    # a store that matches the boxes, so that `train-student --teacher` gets as far as the teacher
    store = make_oracle_store(boxes, root / "labels.zarr", size=SIZE, n_views=2)
    return {"root": root, "boxes": boxes, "marker": marker, "evil": evil, "good": good, "image": image,
            "store": store}


def test_the_crafted_file_does_run_code_when_unpickled_unsafely(env: dict[str, Path], tmp_path: Path) -> None:
    """The check below is meaningful: an unsafe torch.load of the same kind of file writes the marker."""
    marker = tmp_path / "proof.txt"
    torch.save({"x": _RunsCode(marker)}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)
    assert marker.read_text() == "pwned"
    with pytest.raises(UnsafeFile, match=r"holds Python objects .*builtins\.exec.*hpekd checkpoint upgrade"):
        read_torch_file(env["evil"])
    assert not env["marker"].exists()


def _params(root: Path, name: str, **sections: dict[str, Any]) -> Path:
    fast = dict(input_size=SIZE, batch_size=4, epochs=1, workers=0, device="cpu")
    base = {"train_teacher": {**fast, "backbone": "resnet18"}, "train_student": dict(fast),
            "teacher_labels": {"p": 2, "s": 2, "views": 2, "workers": 0, "device": "cpu", "loader_workers": 0},
            "evaluate": {"batch_size": 4, "workers": 0, "grid_faces": 2, "grid_size": 64},
            "ensemble_grid": {"p_max": 2, "s": [2], "loader_workers": 0, "device": "cpu"}}
    for key, values in sections.items():
        base[key] = {**base[key], **values}
    return write_params(root / name, base)


def _commands(e: dict[str, Path], out: Path) -> dict[str, list[str]]:
    """Every command that takes a model or weights, given the crafted file ``e['evil']``."""
    evil, boxes, good = str(e["evil"]), str(e["boxes"]), str(e["good"])
    params = str(_params(out, "params.yaml"))
    weights_t = str(_params(out, "weights_t.yaml", train_teacher={"weights": evil}))
    weights_s = str(_params(out, "weights_s.yaml", train_student={"weights": evil}))
    student = ["train-student", "--backbone", "resnet18", "--boxes", boxes, "--no-progress"]
    teacher = ["train-teacher", "--boxes", boxes, "--metrics", str(out / "m.json"), "--plots", str(out / "p.csv"),
               "--no-progress"]
    return {
        "evaluate": ["evaluate", "--model", evil, "--boxes", boxes, "--metrics", str(out / "m.json"),
                     "--params", params],
        "predict": ["predict", str(e["image"]), "-m", evil, "--detector", "grid", "--device", "cpu",
                    "--out", str(out / "p.jsonl")],
        "export-onnx": ["export-onnx", evil, str(out / "m.onnx")],
        "teacher-labels": ["teacher-labels", "--model", evil, "--boxes", boxes, "--out", str(out / "t.zarr"),
                           "--params", params],
        "ensemble-grid": ["ensemble-grid", "--model", evil, "--boxes", boxes, "--out-json", str(out / "g.json"),
                          "--out-csv", str(out / "g.csv"), "--out-png", str(out / "g.png"), "--params", params],
        "train-student --teacher": [*student, "--teacher", evil, "--labels", str(e["store"]),
                                    "--out", str(out / "s.pt"), "--params", params],
        "train-student --online-teacher": [*student, "--online-teacher", evil, "--out", str(out / "s.pt"),
                                           "--params", params],
        "train-teacher weights:": [*teacher, "--out", str(out / "t.pt"), "--params", weights_t],
        "train-student weights:": [*student, "--online-teacher", good, "--out", str(out / "s.pt"),
                                   "--params", weights_s],
        "train-teacher --resume": [*teacher, "--out", evil, "--params", params, "--resume"],
        "train-student --resume": [*student, "--online-teacher", good, "--out", evil, "--params", params,
                                   "--resume"],
        "import-weights": ["import-weights", evil, "--backbone", "resnet18", "--out", str(out / "i.pt")],
        "checkpoint upgrade (no --trust)": ["checkpoint", "upgrade", evil, str(out / "u.pt")],
    }


COMMANDS = ["evaluate", "predict", "export-onnx", "teacher-labels", "ensemble-grid", "train-student --teacher",
            "train-student --online-teacher", "train-teacher weights:", "train-student weights:",
            "train-teacher --resume", "train-student --resume", "import-weights", "checkpoint upgrade (no --trust)"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_refuses_a_code_running_checkpoint_in_one_line(env: dict[str, Path], tmp_path: Path,
                                                                      name: str) -> None:
    before = env["evil"].read_bytes()
    commands = _commands(env, tmp_path)
    assert sorted(commands) == sorted(COMMANDS)
    args = commands[name]
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit), res.output
    error = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, res.output
    expected = "--trust only if you trust" if "upgrade" in name else "holds Python objects that hpekd does not load"
    assert expected in error[0] and "evil.pt" in error[0], res.output
    if "upgrade" not in name:
        assert f"hpekd checkpoint upgrade {env['evil']} NEW.pt --trust" in error[0]
    assert not env["marker"].exists(), f"{name}: unpickling ran the file's code"
    assert env["evil"].read_bytes() == before  # --resume did not overwrite it either


# ------------------------------------------------------------------------------ malformed checkpoints


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _spec(**change: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda s: {**s, "model_spec": {**s["model_spec"], **change}}


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("not a dict", lambda s: [s["model"]], r"not an hpekd checkpoint: it holds a list"),
    ("kind missing", lambda s: _without(s, "kind"), r"field 'kind' is missing"),
    ("kind wrong", lambda s: {**s, "kind": "teacher"}, r"field 'kind' is 'teacher', expected one of \('stage1'"),
    ("model_spec missing", lambda s: _without(s, "model_spec"), r"field 'model_spec' is missing"),
    ("model_spec not a dict", lambda s: {**s, "model_spec": "resnet18"}, r"field 'model_spec' is a str"),
    ("bin_sizes missing", lambda s: {**s, "model_spec": _without(s["model_spec"], "bin_sizes")},
     r"field 'model_spec\.bin_sizes' is missing \(a model_spec holds backbone, bin_sizes"),
    ("backbone missing", lambda s: {**s, "model_spec": _without(s["model_spec"], "backbone")},
     r"field 'model_spec\.backbone' is missing"),
    ("backbone unknown", _spec(backbone="vgg16"), r"field 'model_spec\.backbone' is 'vgg16'"),
    ("bin_sizes empty", _spec(bin_sizes=[]), r"field 'model_spec\.bin_sizes' is \[\], expected a non-empty list"),
    ("bin_sizes not numbers", _spec(bin_sizes=["1"]), r"field 'model_spec\.bin_sizes' is \['1'\]"),
    ("bin size impossible", _spec(bin_sizes=[0]), r"field 'model_spec' is not a valid architecture"),
    ("regression not bool", _spec(regression="yes"), r"field 'model_spec\.regression' is 'yes'"),
    ("theta not a number", _spec(theta="99"), r"field 'model_spec\.theta' is '99'"),
    ("model_spec unknown key", _spec(dropout=0.5), r"field 'model_spec' has unknown key\(s\) \['dropout'\]"),
    ("model missing", lambda s: _without(s, "model"), r"field 'model' is missing"),
    ("model not a dict", lambda s: {**s, "model": list(s["model"].values())},
     r"field 'model' is a list, expected a dict of tensors"),
    ("model empty", lambda s: {**s, "model": {}}, r"field 'model' is empty"),
    ("model entry not a tensor", lambda s: {**s, "model": {**s["model"], "trunk.conv1.weight": [1.0]}},
     r"field 'model' entry 'trunk\.conv1\.weight' is a list, expected a tensor"),
    ("input_size missing", lambda s: _without(s, "input_size"), r"field 'input_size' is missing"),
    ("input_size wrong", lambda s: {**s, "input_size": [32]}, r"field 'input_size' is \[32\], expected \[height"),
    ("epoch negative", lambda s: {**s, "epoch": -1}, r"field 'epoch' is -1"),
    ("config not a dict", lambda s: {**s, "config": "lr=1"}, r"field 'config' is a str, expected a dict"),
    ("optimizer not a dict", lambda s: {**s, "optimizer": [1]}, r"field 'optimizer' is a list"),
]


@pytest.fixture(scope="module")
def valid_state() -> dict[str, Any]:
    return _state()


@pytest.mark.parametrize(("case", "change", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_checkpoint_names_the_field(valid_state: dict[str, Any], tmp_path: Path, case: str,
                                              change: Callable[[dict[str, Any]], Any], message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(change(dict(valid_state)), path)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)


def test_malformed_checkpoint_on_the_command_line_is_one_line_no_keyerror(env: dict[str, Path], valid_state,
                                                                          tmp_path: Path) -> None:
    """The issue's case: a model_spec without bin_sizes was `KeyError: 'bin_sizes'`."""
    path = tmp_path / "nobins.pt"
    torch.save({**valid_state, "model_spec": _without(valid_state["model_spec"], "bin_sizes")}, path)
    for args in (["evaluate", "--model", str(path), "--boxes", str(env["boxes"]), "--metrics", str(tmp_path / "m.json"),
                  "--params", str(_params(tmp_path, "p.yaml"))],
                 ["export-onnx", str(path), str(tmp_path / "m.onnx")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "KeyError" not in res.output and "Traceback" not in res.output, res.output
        assert "field 'model_spec.bin_sizes' is missing" in res.output


def test_weights_file_checks(valid_state, tmp_path: Path) -> None:
    """``weights:`` takes a state dict of tensors or a well-formed hpekd checkpoint; a junk file,
    a malformed checkpoint and a state dict with other objects are each named."""
    model = HeadPoseNet(ModelSpec("resnet18", bin_sizes=(1,)))
    torch.save({**valid_state, "kind": "mystery"}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"weights file '.*odd\.pt' is not an hpekd checkpoint: field 'kind'"):
        load_backbone_weights(model, tmp_path / "odd.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt' is not a readable weights file"):
        load_backbone_weights(model, tmp_path / "junk.pt")
    trunk = {k[len("trunk."):]: v for k, v in valid_state["model"].items() if k.startswith("trunk.")}
    torch.save(trunk, tmp_path / "trunk.pt")
    load_backbone_weights(model, tmp_path / "trunk.pt")  # a plain state dict loads
    assert torch.equal(model.trunk.conv1.weight, trunk["conv1.weight"])


def test_resume_without_optimizer_state_is_named(env: dict[str, Path], valid_state, tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    save_checkpoint(out, _state(spec=ModelSpec("resnet18", feature_norm=True), optimizer=None))
    res = CliRunner().invoke(main, ["train-teacher", "--boxes", str(env["boxes"]), "--out", str(out), "--params",
                                    str(_params(tmp_path, "p.yaml")), "--metrics", str(tmp_path / "m.json"),
                                    "--plots", str(tmp_path / "p.csv"), "--resume", "--no-progress"])
    assert res.exit_code == 1 and "field 'optimizer' holds no optimizer state" in res.output, res.output


# ------------------------------------------------------------------------------ what training writes; upgrade


def test_a_training_checkpoint_loads_safely_and_resumes(env: dict[str, Path], tmp_path: Path) -> None:
    """Every key a training run writes (optimizer, scheduler, numpy/torch/python RNG state,
    history) is plain data the safe loader reads, and --resume restores it."""
    out = tmp_path / "t.pt"
    args = ["train-teacher", "--boxes", str(env["boxes"]), "--out", str(out), "--metrics", str(tmp_path / "m.json"),
            "--plots", str(tmp_path / "p.csv"), "--no-progress", "--params"]
    res = CliRunner().invoke(main, [*args, str(_params(tmp_path, "p1.yaml"))])
    assert res.exit_code == 0, res.output
    state = load_checkpoint(out)
    assert state["rng"]["numpy"][1].dtype == np.uint32 and state["optimizer"]["state"]
    res = CliRunner().invoke(main, [*args, str(_params(tmp_path, "p2.yaml", train_teacher={"epochs": 2})),
                                    "--resume"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out)["epoch"] == 2


@dataclasses.dataclass
class _OldConfig:
    root: PurePosixPath
    lr: np.float64


def _old_style(valid_state: dict[str, Any], path: Path) -> Path:
    """A checkpoint as a careless earlier writer might have pickled it: numpy scalars in its
    history, a dataclass with a path in its config. Harmless, but only an unsafe load reads it."""
    torch.save({**valid_state, "history": [{"epoch": 1, "mae_mean": np.float64(7.5)}],
                "config": {"run": _OldConfig(PurePosixPath("/data"), np.float64(1e-3)), "sizes": np.arange(3)}}, path)
    return path


def test_upgrade_converts_an_old_style_checkpoint_only_with_trust(valid_state, tmp_path: Path) -> None:
    old = _old_style(valid_state, tmp_path / "old.pt")
    with pytest.raises(UnsafeFile, match=r"hpekd checkpoint upgrade .*old\.pt NEW\.pt --trust"):
        load_checkpoint(old)
    new = tmp_path / "new.pt"
    res = CliRunner().invoke(main, ["checkpoint", "upgrade", str(old), str(new)])
    assert res.exit_code == 1 and "refusing to load" in res.output and "--trust" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not new.exists()
    res = CliRunner().invoke(main, ["checkpoint", "upgrade", str(old), str(new), "--trust"])
    assert res.exit_code == 0, res.output
    state = load_checkpoint(new)
    assert state["history"] == [{"epoch": 1, "mae_mean": 7.5}]
    assert state["config"] == {"run": {"root": "/data", "lr": 1e-3}, "sizes": [0, 1, 2]}
    assert state["kind"] == "stage1" and state["model_spec"] == valid_state["model_spec"]
    assert all(torch.equal(state["model"][k], v) for k, v in valid_state["model"].items())


def test_upgrade_refuses_what_it_cannot_convert(valid_state, tmp_path: Path) -> None:
    torch.save({**valid_state, "thing": _Opaque()}, tmp_path / "opaque.pt")
    res = CliRunner().invoke(main, ["checkpoint", "upgrade", str(tmp_path / "opaque.pt"), str(tmp_path / "n.pt"),
                                    "--trust"])
    assert res.exit_code == 1 and "field 'thing' holds a " in res.output
    assert "_Opaque, which has no plain-data form" in res.output
    torch.save({**valid_state, "model_spec": _without(valid_state["model_spec"], "bin_sizes")}, tmp_path / "nb.pt")
    res = CliRunner().invoke(main, ["checkpoint", "upgrade", str(tmp_path / "nb.pt"), str(tmp_path / "n.pt"),
                                    "--trust"])
    assert res.exit_code == 1 and "field 'model_spec.bin_sizes' is missing" in res.output
    assert not (tmp_path / "n.pt").exists()
