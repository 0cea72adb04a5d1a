"""Nothing deleted that hpekd did not make (issue 33, docs/outputs.md).

Every command that writes a path the user gives is tried with that path pointing at (1) a
folder of the user's holding other files, (2) the folder holding the command's input, (3) a
file of the user's where a folder is expected and a folder where a file is expected (and the
command's own input as a file output). Each must end in one line naming the path, exit != 0,
no traceback, and every file as it was. Folder writers replace their own earlier product, and
a replacement killed between its steps leaves the old or the new product, and the next run
sweeps what it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.core import io
from pipeline.core.config import default_config
from pipeline.core.io import Product, json_marker, replace_folder, sweep_leftovers
from pipeline.synth.generate import SynthConfig
from stages.cli import main
from tests.helpers.params import DEFAULT, write_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Path]:
    """Inputs under ``in/`` (contents never read: every refusal comes before), a user's folder
    and a user's file."""
    src = tmp_path / "in"
    (src / "photos").mkdir(parents=True)
    (src / "labels.zarr").mkdir()
    files = {"boxes": "boxes.parquet", "model": "model.pt", "weights": "weights.pth", "manifest": "manifest.parquet",
             "overlay": "overlay.yaml", "photo": "photos/a.jpg", "store_json": "labels.zarr/zarr.json",
             "grid": "grid.json", "eval": "eval/kd-resnet18.json"}
    w = {}
    for key, rel in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"input {key}\n")
        w[key] = src / rel
    w["params"] = write_params(src / "params.yaml")
    w["in"], w["photos"], w["store"], w["evals"] = src, src / "photos", src / "labels.zarr", src / "eval"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    (user / "sub").mkdir()
    (user / "sub" / "data.csv").write_text("a,b\n1,2\n")
    w["user_dir"], w["user_file"] = user, tmp_path / "thesis.txt"
    w["user_file"].write_text("my thesis\n")
    w["tmp"] = tmp_path
    return w


Argv = Callable[[dict[str, Path], Path], list[str]]


def _p(w: dict[str, Path], name: str) -> str:
    return str(w["tmp"] / "fresh" / name)  # a harmless, absent path for the outputs not under test


# command id -> (kind of the output under test, argv with that output at `dest`)
COMMANDS: dict[str, tuple[str, Argv]] = {
    "synthesize --out": ("folder", lambda w, d: ["synthesize", "--out", str(d), "--params", str(w["params"])]),
    "index --out": ("file", lambda w, d: ["index", "--out", str(d), "--params", str(w["params"])]),
    "relabel --out": ("file", lambda w, d: ["relabel", "--manifest", str(w["manifest"]), "--out", str(d),
                                            "--summary", _p(w, "s.json"), "--cache", _p(w, "cache"),
                                            "--params", str(w["params"])]),
    "relabel --cache": ("folder", lambda w, d: ["relabel", "--manifest", str(w["manifest"]), "--out", _p(w, "b.parquet"),
                                                "--summary", _p(w, "s.json"), "--cache", str(d),
                                                "--params", str(w["params"])]),
    "train-teacher --out": ("file", lambda w, d: ["train-teacher", "--boxes", str(w["boxes"]), "--out", str(d),
                                                  "--metrics", _p(w, "m.json"), "--plots", _p(w, "p.csv"),
                                                  "--params", str(w["params"])]),
    "train-teacher --metrics": ("file", lambda w, d: ["train-teacher", "--boxes", str(w["boxes"]), "--out",
                                                      _p(w, "t.pt"), "--metrics", str(d), "--plots", _p(w, "p.csv"),
                                                      "--params", str(w["params"])]),
    "train-teacher --plots": ("file", lambda w, d: ["train-teacher", "--boxes", str(w["boxes"]), "--out", _p(w, "t.pt"),
                                                    "--metrics", _p(w, "m.json"), "--plots", str(d),
                                                    "--params", str(w["params"])]),
    "train-student --out": ("file", lambda w, d: ["train-student", "--labels", str(w["store"]), "--boxes",
                                                  str(w["boxes"]), "--out", str(d), "--params", str(w["params"])]),
    "train-student --metrics": ("file", lambda w, d: ["train-student", "--labels", str(w["store"]), "--boxes",
                                                      str(w["boxes"]), "--out", _p(w, "s.pt"), "--metrics", str(d),
                                                      "--params", str(w["params"])]),
    "train-student --plots": ("file", lambda w, d: ["train-student", "--labels", str(w["store"]), "--boxes",
                                                    str(w["boxes"]), "--out", _p(w, "s.pt"), "--plots", str(d),
                                                    "--params", str(w["params"])]),
    "teacher-labels --out": ("folder", lambda w, d: ["teacher-labels", "--model", str(w["model"]), "--boxes",
                                                     str(w["boxes"]), "--out", str(d), "--params", str(w["params"])]),
    "labels convert --out": ("folder", lambda w, d: ["labels", "convert", str(w["store"]), "--out", str(d)]),
    "ensemble-grid --out-json": ("file", lambda w, d: ["ensemble-grid", "--model", str(w["model"]), "--boxes",
                                                       str(w["boxes"]), "--out-json", str(d), "--out-csv",
                                                       _p(w, "g.csv"), "--out-png", _p(w, "g.png"),
                                                       "--params", str(w["params"])]),
    "evaluate --metrics": ("file", lambda w, d: ["evaluate", "--model", str(w["model"]), "--boxes", str(w["boxes"]),
                                                 "--metrics", str(d), "--params", str(w["params"])]),
    "report --out": ("file", lambda w, d: ["report", "--metrics-dir", str(w["evals"]), "--out", str(d),
                                           "--plot", _p(w, "t.png")]),
    "predict --out": ("file", lambda w, d: ["predict", str(w["photos"]), "--model", str(w["model"]), "--out", str(d)]),
    "predict --out (image)": ("file", lambda w, d: ["predict", str(w["photo"]), "--model", str(w["model"]),
                                                    "--out", str(d)]),
    "predict --draw": ("folder", lambda w, d: ["predict", str(w["photos"]), "--model", str(w["model"]),
                                               "--out", _p(w, "p.jsonl"), "--draw", str(d)]),
    "predict --draw (video)": ("folder", lambda w, d: ["predict", str(w["in"] / "clip.mp4"), "--model",
                                                       str(w["model"]), "--out", _p(w, "p.jsonl"), "--draw", str(d)]),
    "export-onnx": ("file", lambda w, d: ["export-onnx", str(w["model"]), str(d), "--no-check"]),
    "import-weights --out": ("file", lambda w, d: ["import-weights", str(w["weights"]), "--backbone", "resnet18",
                                                   "--out", str(d)]),
    "params apply --out": ("file", lambda w, d: ["params", "apply", str(w["overlay"]), "--default", str(DEFAULT),
                                                 "--out", str(d), "--no-check-paths"]),
}

# the input each command reads that a file output must not overwrite
OWN_INPUT = {
    "index --out": "params", "relabel --out": "manifest", "train-teacher --out": "boxes",
    "train-teacher --metrics": "params", "train-teacher --plots": "boxes", "train-student --out": "boxes",
    "train-student --metrics": "params", "train-student --plots": "boxes", "ensemble-grid --out-json": "model",
    "evaluate --metrics": "boxes", "report --out": "eval", "predict --out (image)": "photo", "export-onnx": "model",
    "import-weights --out": "weights", "params apply --out": "overlay",
}


FOLDER_HERE = ("is a folder", "is a directory")


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _refused(w: dict[str, Path], argv: list[str], dest: Path, *words: str) -> None:
    """One ``Error:`` line naming ``dest`` and one of ``words`` (click's own check of a path
    option, "is a directory", counts), exit != 0, no traceback, every file as it was."""
    before = _snapshot(w["tmp"])
    res = CliRunner().invoke(main, argv)
    out = res.output
    assert res.exit_code != 0, out
    assert "Traceback" not in out and res.exception is None or isinstance(res.exception, SystemExit), out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(dest) in errors[0], out
    assert any(word in errors[0] for word in words), out
    after = {k: v for k, v in _snapshot(w["tmp"]).items() if not k.startswith("fresh")}
    assert after == {k: v for k, v in before.items() if not k.startswith("fresh")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_folder_of_the_users_is_refused(world: dict[str, Path], command: str) -> None:
    kind, argv = COMMANDS[command]
    dest = world["user_dir"]
    _refused(world, argv(world, dest), dest, *(("remove it yourself",) if kind == "folder" else FOLDER_HERE))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_folder_holding_the_input_is_refused(world: dict[str, Path], command: str) -> None:
    kind, argv = COMMANDS[command]
    dest = world["in"]
    _refused(world, argv(world, dest), dest, *(("input",) if kind == "folder" else FOLDER_HERE))


@pytest.mark.parametrize("command", [c for c, (kind, _) in COMMANDS.items() if kind == "folder"])
def test_a_users_file_where_a_folder_is_expected_is_refused(world: dict[str, Path], command: str) -> None:
    _, argv = COMMANDS[command]
    dest = world["user_file"]
    _refused(world, argv(world, dest), dest, "is a file")


@pytest.mark.parametrize("command", list(OWN_INPUT))
def test_a_file_output_over_its_own_input_is_refused(world: dict[str, Path], command: str) -> None:
    _, argv = COMMANDS[command]
    dest = world[OWN_INPUT[command]]
    _refused(world, argv(world, dest), dest, "input")


def test_drawings_inside_the_input_folder_are_refused(world: dict[str, Path]) -> None:
    _, argv = COMMANDS["predict --draw"]
    dest = world["photos"] / "annotated"
    _refused(world, argv(world, dest), dest, "lies inside")


# ------------------------------------------------------------------ own products replaced safely

def test_synthesize_replaces_its_own_dataset_only(tmp_path: Path) -> None:
    from pipeline.synth.generate import synthesize

    out = tmp_path / "synthetic"
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=1, n_test=1, seed=1, size=64), out, progress=False)
    first = (out / "synth_info.json").read_bytes()
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=2, n_test=1, seed=1, size=64), out, progress=False)  # its own product: replaced
    assert (out / "synth_info.json").read_bytes() != first and len(list((out / "test").iterdir())) >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]  # nothing left beside it
    (out / "synth_info.json").write_text(json.dumps({"subset": "MINE"}))
    with pytest.raises(ValueError, match="not an hpekd synthetic dataset"):
        synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=1, n_test=0, seed=1, size=64), out, progress=False)


def test_convert_replaces_its_own_store_and_a_kill_mid_write_keeps_it(tiny_boxes: Path, tmp_path: Path) -> None:
    from pipeline.teacher import labelread
    from pipeline.teacher.convert import convert_store
    from tests.helpers.student import make_oracle_store

    src = make_oracle_store(tiny_boxes, tmp_path / "src.zarr", size=48, n_views=2)
    dst = tmp_path / "dst.zarr"
    convert_store(str(src), str(dst), "uint8")
    convert_store(str(src), str(dst), "top8")  # its own product: replaced
    assert labelread.info(str(dst))["encoding"] == "top8"
    code = ("import os, signal; from pipeline.teacher import labelstore; from pipeline.teacher.convert import "
            "convert_store\ndef die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\nlabelstore.write_shard = die\n"
            f"convert_store({str(src)!r}, {str(dst)!r}, 'float16')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == -signal.SIGKILL
    assert labelread.info(str(dst))["encoding"] == "top8" and labelread.verify(str(dst), str(tiny_boxes)) == []
    assert any(p.name.startswith(".dst.zarr.") for p in tmp_path.iterdir())  # the killed run's temporary
    convert_store(str(src), str(dst), "float16")  # the next run sweeps it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.zarr", "src.zarr"]


def test_drawings_folder_is_written_into_again_only_when_it_is_hpekds(tmp_path: Path) -> None:
    from pipeline.inference.drawing import MARKER, DrawingWriter

    root = tmp_path / "drawn"
    DrawingWriter(root)
    assert (root / MARKER).is_file()
    DrawingWriter(root)  # an earlier run's drawings: accepted
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.png").write_bytes(b"mine")
    with pytest.raises(ValueError, match="not an hpekd drawings folder"):
        DrawingWriter(tmp_path / "mine")


def test_relabel_cache_is_recognised(tmp_path: Path) -> None:
    from pipeline.relabel.cache import RELABEL_CACHE, _Cache

    _Cache(tmp_path / "cache", "0123456789abcdef", {"mode": "read"})
    io.check_folder_output(tmp_path / "cache", RELABEL_CACHE, "--cache")
    (tmp_path / "cache" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an hpekd relabel cache"):
        io.check_folder_output(tmp_path / "cache", RELABEL_CACHE, "--cache")


# ------------------------------------------------------------------ the swap, killed between its steps

PRODUCT = Product("a test product", json_marker("made.json", ("by",), "test"))


def _make(folder: Path, version: str) -> None:
    (folder / "made.json").write_text(json.dumps({"by": "test"}))
    (folder / "v.txt").write_text(version)


_KILL = """
import json, os, signal, sys
from pathlib import Path
from pipeline.core import io
from tests.test_output_safety import PRODUCT, _make
mode, dest = sys.argv[1], Path(sys.argv[2])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if mode == "after-exchange":
    io._remove = die
else:  # the fallback's two renames: killed between them
    io._exchange = lambda a, b: False
    real = os.rename
    calls = []
    def rename(a, b):
        calls.append(a)
        if len(calls) == 2:
            die()
        real(a, b)
    os.rename = rename
with io.replace_folder(dest, PRODUCT) as tmp:
    _make(tmp, "new")
"""


@pytest.mark.parametrize("mode", ["after-exchange", "between-renames"])
def test_a_kill_during_the_swap_leaves_a_product_and_the_next_run_sweeps(tmp_path: Path, mode: str) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    _make(dest, "old")
    foreign = tmp_path / ".other.old-999999999"  # not this path's: never touched
    foreign.mkdir()
    run = subprocess.run([sys.executable, "-c", _KILL, mode, str(dest)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    if mode == "after-exchange":  # the new one swapped in (or, without renameat2, the old one still there)
        assert (dest / "v.txt").read_text() in ("new", "old") and len(left) == 1
    else:  # killed between the fallback's renames: the old one waits aside
        (aside,) = [p for p in left if p.name.startswith(".out.old-")]
        assert not dest.exists() and (aside / "v.txt").read_text() == "old" and len(left) == 2  # + the new one
    sweep_leftovers(dest, PRODUCT)
    assert (dest / "v.txt").read_text() in ("old", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.old-999999999", "out"]
    with replace_folder(dest, PRODUCT) as tmp:  # and the next run replaces it as usual
        _make(tmp, "next")
    assert (dest / "v.txt").read_text() == "next" and foreign.is_dir()


def test_a_failed_block_leaves_the_old_product_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    _make(dest, "old")
    with pytest.raises(RuntimeError), replace_folder(dest, PRODUCT) as tmp:
        _make(tmp, "new")
        raise RuntimeError("boom")
    assert (dest / "v.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_file_output_never_replaces_a_folder(tmp_path: Path) -> None:
    (tmp_path / "m.json").mkdir()
    (tmp_path / "m.json" / "keep").write_text("x")
    with pytest.raises(ValueError, match="it is a folder"):
        io.write_json(tmp_path / "m.json", {})
    assert (tmp_path / "m.json" / "keep").read_text() == "x"


def test_index_extracts_only_into_its_own_folder(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.manifest.biwi import extract_npz_images

    images = np.zeros((2, 8, 8, 3), np.uint8)
    out = tmp_path / "extracted" / "biwi"
    assert extract_npz_images(images, out) == 2 and extract_npz_images(images[:1], out) == 0  # its own: pruned
    assert sorted(p.name for p in out.iterdir()) == ["000000.png"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "000005.png").write_bytes(b"mine")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a folder of images extracted by hpekd index"):
        extract_npz_images(images, tmp_path / "mine")
    assert (tmp_path / "mine" / "000005.png").read_bytes() == b"mine"
